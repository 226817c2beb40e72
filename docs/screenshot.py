"""Takes docs/screenshot.png: the real window, in a real call, on a real X server (Xvfb).

    xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python docs/screenshot.py [--preset small]

Nothing is staged: the model (default: the embedded one) hears a spoken question played by a
file-backed audio device, a document is indexed, a typed question is sent into the call, and
what the transcript, meters and latency overlay show at that moment is what is captured. With
untrained speech heads, Michi's words are whatever those heads produce.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT = """Oakhaven travel notes

In Oakhaven the sky is purple at dusk, because of the lavender fields around the town.

The tram to the old harbour leaves every twelve minutes from Quill Square.
"""


def spoken(text: str, path: Path) -> None:
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True)
    wave, rate = sf.read(raw, dtype="float32")
    pause = np.zeros(int(1.5 * rate), np.float32)
    sf.write(path, np.concatenate([pause, wave, pause, pause]), rate)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", help="a preset instead of the embedded model")
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshot.png"))
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="michi-shot-"))
    os.environ["MICHI_HOME"] = str(scratch / "home")

    from PySide6.QtCore import QSettings, QTimer

    from app.audio.file_device import FileAudioDevice
    from app.main import application, end_workers, load_request_from_args
    from app.main_window import MainWindow
    from app.model_loader import LoadRequest
    from app.widgets.conversation_control import CallState
    from app.widgets.documents_panel import DocumentsPanel
    from michi_core.stores.rag import DocumentStore, Ingestor, default_embedder

    database = scratch / "michi.sqlite3"
    notes = scratch / "Oakhaven travel notes.md"
    notes.write_text(DOCUMENT, encoding="utf-8")
    with DocumentStore(database) as store:
        Ingestor(store, default_embedder()).ingest([notes])
    voice = scratch / "question.wav"
    spoken("Hello Michi. I am planning a trip to Oakhaven next week.", voice)

    app = application()
    window = MainWindow(settings=QSettings(str(scratch / "settings.ini"), QSettings.Format.IniFormat),
                        sounddevice_module=FileAudioDevice(str(voice)),
                        load_request=load_request_from_args(args.preset, None) or LoadRequest(),
                        documents_panel_factory=lambda: DocumentsPanel(database, default_embedder()),
                        store_path=database)
    window.resize(1120, 720)
    window.show()
    window.set_overlay_visible(True)
    window.model_ready.connect(window.start_conversation)
    state = {"sent": None}

    def tick() -> None:
        worker = window.worker
        if window.control.state is not CallState.LIVE or worker is None or worker.audio is None:
            return
        heard = worker.audio.captured_samples / 24000
        if state["sent"] is None and heard > 4.5:
            window.message_input.setText("What colour is the sky in Oakhaven?")
            window.send_message()
            state["sent"] = time.monotonic()
        elif state["sent"] is not None and time.monotonic() - state["sent"] > 0.6:
            window.grab().save(args.out)
            print(f"wrote {args.out}")
            window.stop_conversation()
            QTimer.singleShot(1500, app.quit)

    timer = QTimer(interval=100)
    timer.timeout.connect(tick)
    timer.start()
    QTimer.singleShot(600_000, app.quit)
    app.exec()
    end_workers(0)
    return 0 if Path(args.out).exists() else 1


if __name__ == "__main__":
    sys.exit(main())
