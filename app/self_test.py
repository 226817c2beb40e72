"""`michi --self-test`: the whole app, end to end, with a WAV file as the microphone.

It opens the real main window (offscreen), loads the model through the real loader, presses
Start, lets the file-backed sound device play a few seconds of the WAV into the real audio
pipeline (AudioIO rings, echo canceller, VAD, the inference worker) at real time, presses
Stop, and prints what a user would want to know: frames stepped, underruns, step times. It
exits 0 when the call ran and was saved, non-zero otherwise, so CI and a support request can
both run it. Nothing touches the user's settings or conversations: all of it lives in a
temporary directory. The user's own database is checked too, read-only (damaged? writable?),
since a self-test that passes while the real store cannot save would mislead.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from michi_core.model.config import CodecConfig

log = logging.getLogger(__name__)

SYNTHETIC_SECONDS = 6.0
MIN_FRAME_FRACTION = 0.5  # of the frames the input should give (stepped or skipped): fewer means a stall
LOAD_TIMEOUT_S = 600.0  # the first dequantization of the embedded model takes a while on a slow CPU
POLL_MS = 50


def synthetic_voice(seconds: float, sample_rate: int = CodecConfig.sample_rate, seed: int = 0) -> np.ndarray:
    """Voiced syllables with pauses (a pitch pulse train through vowel-like resonances): enough
    like speech for the VAD, with nothing to install or ship."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    pitch = 120.0 * (1 + 0.1 * np.sin(2 * np.pi * 0.5 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    formants = (700.0, 1200.0, 2600.0)
    voice = sum(np.sin(k * phase) * sum(np.exp(-((k * 120.0 - f) / 150.0) ** 2) for f in formants) / k
                for k in range(1, 30))
    syllables = np.clip(np.sin(2 * np.pi * 2.0 * t), 0, 1) ** 0.5  # ~4 syllables a second
    phrases = (t % 3.0) < 1.8  # 1.8 s of talking, 1.2 s of pause: turns for the model to take
    wave = voice * syllables * phrases + 0.002 * rng.standard_normal(n)
    return (0.4 * wave / np.abs(wave).max()).astype(np.float32)


def run_self_test(input_path: str | None = None, preset_name: str | None = None,
                  checkpoint: str | None = None, seconds: float = 4.0) -> int:
    from michi_core.console import clean
    from michi_core.paths import database_path
    from michi_core.stores.database import describe

    if input_path is not None and not Path(input_path).is_file():
        print(f"michi self-test: FAILED: no such input file {clean(input_path)}")
        return 2
    if input_path is not None:
        try:
            sf.info(input_path)
        except (sf.LibsndfileError, RuntimeError) as error:
            print(f"michi self-test: FAILED: {clean(input_path)} is not a readable audio file ({clean(error)})")
            return 2
    store_problem = describe(database_path())
    os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before the QApplication exists: no display needed
    with tempfile.TemporaryDirectory(prefix="michi-self-test-") as scratch:
        return _run(Path(scratch), input_path, preset_name, checkpoint, seconds, store_problem)


def _run(scratch: Path, input_path: str | None, preset_name: str | None, checkpoint: str | None,
         seconds: float, store_problem: str | None) -> int:
    from PySide6.QtCore import QEvent, QSettings, QTimer

    from app.audio.file_device import FileAudioDevice
    from app.main import application, end_workers, load_request_from_args
    from app.main_window import MainWindow
    from app.model_loader import LoadRequest
    from app.widgets.conversation_control import CallState
    from app.widgets.documents_panel import DocumentsPanel
    from michi_core.stores.conversations import ConversationStore
    from michi_core.stores.rag import default_embedder

    if input_path is None:
        input_path = str(scratch / "voice.wav")
        sf.write(input_path, synthetic_voice(max(seconds, SYNTHETIC_SECONDS)), CodecConfig.sample_rate)
    duration = min(seconds, sf.info(input_path).duration)
    device = FileAudioDevice(input_path)
    database = scratch / "michi.sqlite3"
    app = application()
    window = MainWindow(
        settings=QSettings(str(scratch / "settings.ini"), QSettings.Format.IniFormat),
        sounddevice_module=device,
        load_request=load_request_from_args(preset_name, checkpoint) or LoadRequest(),
        documents_panel_factory=lambda: DocumentsPanel(database, default_embedder()),
        store_path=database,
    )
    window.show()
    outcome: dict = {}
    started = time.monotonic()

    def finish(code: int, message: str) -> None:
        if "code" not in outcome:
            outcome.update(code=code, message=message)
            window.close()
            app.quit()

    def on_call_ended(summary) -> None:
        expected = duration * CodecConfig().frame_rate
        if summary.error:
            finish(1, summary.error)
        elif summary.frames + summary.dropped_frames < MIN_FRAME_FRACTION * expected:
            # Slow compute skips frames (reported below, not a failure); a stalled loop loses them.
            finish(1, f"only {summary.frames + summary.dropped_frames} frames reached the model for "
                      f"{duration:.1f} s of input ({expected:.0f} expected): the audio loop stalled")
        elif summary.conversation_id is None:
            finish(1, summary.save_error or "the conversation was not saved")
        else:
            outcome["summary"] = summary
            finish(0, "OK")

    def watch() -> None:
        worker = window.worker
        if window.control.state is CallState.LIVE and worker is not None and worker.audio is not None:
            captured = worker.audio.captured_samples / CodecConfig.sample_rate
            if captured >= duration or device.mic_finished.is_set():
                window.stop_conversation()
        load_deadline = LOAD_TIMEOUT_S + 3 * duration + 30
        if time.monotonic() - started > load_deadline:
            finish(1, f"timed out after {load_deadline:.0f} s in state {window.control.state.value!r}")

    window.model_ready.connect(window.start_conversation)
    window.model_failed.connect(lambda message: finish(1, f"the model could not be loaded: {message}"))
    window.call_ended.connect(on_call_ended)
    timer = QTimer(interval=POLL_MS)
    timer.timeout.connect(watch)
    timer.start()
    app.exec()
    timer.stop()
    end_workers(outcome.get("code", 1))
    if store_problem and outcome.get("code") == 0:
        outcome.update(code=1, message=f"the app works, but your data cannot be saved: {store_problem}")
    _print_summary(window, outcome, input_path, duration, database, ConversationStore)
    if not store_problem:
        from michi_core.paths import database_path

        print(f"  your data: {database_path()} is healthy and can be saved to")
    window.deleteLater()  # before the temporary directory (its database) goes away
    app.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    return outcome.get("code", 1)


def _print_summary(window, outcome: dict, input_path: str, duration: float, database: Path,
                   store_class) -> None:
    loaded = window.loaded_model
    verdict = "OK" if outcome.get("code") == 0 else f"FAILED: {outcome.get('message', '?')}"
    print(f"michi self-test: {verdict}")
    if loaded is not None:
        print(f"  model: {loaded.name} on {loaded.compute_device}, ready in {loaded.seconds:.1f} s")
    print(f"  input: {input_path} ({duration:.1f} s played)")
    summary = outcome.get("summary") or window.last_summary
    if summary is None:
        return
    latency = window.latency_snapshot()
    budget = CodecConfig().frame_ms
    p50 = "—" if summary.step_p50_ms is None else f"{summary.step_p50_ms:.1f}"
    p95 = "—" if summary.step_p95_ms is None else f"{summary.step_p95_ms:.1f}"
    print(f"  audio: {latency.device or '—'}")
    print(f"  frames stepped: {summary.frames} ({summary.frames * budget / 1000:.1f} s), "
          f"dropped to catch up: {summary.dropped_frames}")
    print(f"  underruns: {summary.underruns}")
    print(f"  step p50 / p95: {p50} / {p95} ms (budget {budget:.0f} ms)")
    if summary.ttfa_ms is not None:
        print(f"  TTFA (end of speech -> first audio produced): {summary.ttfa_ms:.0f} ms")
    if summary.response_ms is not None:
        print(f"  response latency (end of speech -> first audio played): {summary.response_ms:.0f} ms")
    if summary.conversation_id is not None:
        with store_class(database) as store:
            conversation = store.get(summary.conversation_id)
        print(f"  conversation saved: {conversation.duration_s:.1f} s of audio, "
              f"{len(conversation.turns)} turns")
