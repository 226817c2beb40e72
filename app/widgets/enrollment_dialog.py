"""The enrollment dialog: record (or import) a few seconds of a voice, check the take, save it.

The user reads the sentence shown while a level meter moves; recording stops by itself at
MAX_TAKE_S. The take is judged by `michi_core.stores.voice_checks.check_take` (the same rules as
`michi voices add`): a take that would clone badly is refused, each reason said with its numbers
and what to do about it; one that would clone, but not at its best, can be saved and says what
would be better ("quiet (the voice at -48 dBFS) — move closer to the microphone"). A take that
passes can be played back, named and saved to the voice store.

Audio goes through an injected `Recorder`; `AudioPortRecorder` adapts the app's audio layer
(`app/audio_port.AudioPort`, the real `AudioIO`) to it, and tests hand in a fake that yields a
crafted signal. Reading a file (long ones take a moment to decode and scan) runs in a job
(`app.threads.run_job`) off the GUI thread; the take checks are milliseconds and run in place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.audio_port import AudioPort
from app.theme import USER_COLOR
from app.threads import Job, run_job
from app.widgets.level_meter import LevelMeter
from michi_core.model.model import ASSETS_DIR
from michi_core.stores.voice_checks import (
    MAX_TAKE_S,
    SUGGESTED_TAKE_S,
    TakeReport,
    check_take,
    normalize_loudness,
)
from michi_core.stores.voices import STORE_RATE, VoiceError, VoiceStore, load_voice_file

SCRIPTS_PATH = ASSETS_DIR / "enrollment_scripts.txt"
POLL_INTERVAL_MS = 33  # ~30 Hz: the meter moves smoothly and the mic backlog never grows
AUDIO_FILTER = "Audio files (*.wav *.flac *.ogg *.oga);;All files (*)"


def load_scripts(path: Path = SCRIPTS_PATH) -> list[str]:
    """The sentences to read: one per line, `#` comments and blank lines skipped."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


class Recorder(Protocol):
    """What enrollment and previews need from an audio device: mono in and out at STORE_RATE."""

    def start(self) -> None: ...  # open the device (mic and speaker); RuntimeError with a user message
    def stop(self) -> None: ...  # close it
    def read(self) -> np.ndarray: ...  # every mic sample captured since the last read; (0,) if none
    def play(self, wave: np.ndarray) -> None: ...  # play `wave`, replacing whatever still plays
    def keep_playing(self) -> bool: ...  # call every ~100 ms while playing: False once all was heard


class AudioPortRecorder:
    """A `Recorder` over the app's audio layer (the `AudioPort` the live call uses).

    The port's playback ring holds a couple of seconds (the live call queues 80 ms frames), so a
    15 s take is fed into it a little ahead of the speaker, at each `keep_playing` poll, instead
    of written at once (the ring would keep only its end). A little silence follows the take:
    a resampling port holds back the last few milliseconds written until more audio pushes them
    out, so "everything but that silence was played" is what marks the end.
    """

    FEED_AHEAD = STORE_RATE  # samples kept queued ahead of the speaker: 1 s rides out a busy GUI thread
    TAIL = STORE_RATE // 10  # the silence after a take (far more than a resampler holds back)

    def __init__(self, port: AudioPort):
        self.port = port  # it speaks 24 kHz, the rate of everything inside Michi
        self._to_play = np.zeros(0, np.float32)

    def start(self) -> None:
        self.port.start()

    def stop(self) -> None:
        self.port.stop()

    def read(self) -> np.ndarray:
        """The whole backlog, down to the last sample (a take must not lose the end of its last
        word). The port may count a few samples its resampler still holds, so a request it cannot
        serve is halved until it can."""
        chunks, size = [], self.port.mic_backlog_samples
        while size > 0:
            chunk = self.port.read_mic_frame(size)
            if chunk is None:
                size //= 2
            else:
                chunks.append(chunk)
                size = min(size, self.port.mic_backlog_samples)
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)

    def play(self, wave: np.ndarray) -> None:
        self.port.clear_playback()
        self._to_play = np.concatenate([np.asarray(wave, dtype=np.float32), np.zeros(self.TAIL, np.float32)])
        self.keep_playing()

    def keep_playing(self) -> bool:
        room = self.FEED_AHEAD - self.port.playback_queued_samples
        if room > 0 and self._to_play.size:
            self.port.write_playback(self._to_play[:room])
            self._to_play = self._to_play[room:]
        return self._to_play.size > 0 or self.port.playback_queued_samples > self.TAIL


class EnrollmentDialog(QDialog):
    voice_saved = Signal(int)  # the new voice's id

    def __init__(self, recorder: Recorder, store_path: Path | None = None, scripts: list[str] | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Add a voice")
        self.recorder = recorder
        self.store_path = store_path
        self.scripts = scripts or load_scripts()
        self.script_index = 0
        self.take: np.ndarray | None = None  # the take to save, at STORE_RATE (normalized once it passes)
        self.report: TakeReport | None = None
        self.source = "recorded"
        self._import_path: Path | None = None
        self._chunks: list[np.ndarray] = []
        self._recorded = 0  # samples in _chunks
        self._device_open = False
        self._job: Job | None = None

        intro = QLabel(f"Read the sentence below aloud, in your usual voice, {SUGGESTED_TAKE_S:.0f} to "
                       f"{MAX_TAKE_S:.0f} seconds. Or import a recording of someone speaking.")
        intro.setWordWrap(True)
        intro.setObjectName("hint")
        self.script_label = QLabel()
        self.script_label.setWordWrap(True)
        self.script_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.script_label.setStyleSheet("font-size: 17px; padding: 10px;")
        self.next_script_button = QPushButton("Another sentence")
        self.next_script_button.clicked.connect(self.next_script)

        self.record_button = QPushButton("Record")
        self.record_button.clicked.connect(self._toggle_recording)
        self.import_button = QPushButton("Import a file…")
        self.import_button.clicked.connect(self._choose_file)
        self.play_button = QPushButton("Play back")
        self.play_button.clicked.connect(self._toggle_playback)
        self.meter = LevelMeter("Mic", USER_COLOR)
        self.elapsed = QProgressBar()
        self.elapsed.setRange(0, int(MAX_TAKE_S * 10))  # tenths of a second
        self._show_elapsed(0.0)

        self.report_label = QLabel("")
        self.report_label.setWordWrap(True)
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("e.g. My voice")
        self.name_edit.textChanged.connect(self._update_buttons)
        self.transcript_edit = QLineEdit()
        self.transcript_edit.setPlaceholderText("What is said in the recording (helps the cloning)")

        standard = QDialogButtonBox.StandardButton
        self.buttons = QDialogButtonBox(standard.Save | standard.Cancel)
        self.save_button = self.buttons.button(standard.Save)
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)

        script_row = QHBoxLayout()
        script_row.addWidget(self.script_label, 1)
        script_row.addWidget(self.next_script_button, 0, Qt.AlignmentFlag.AlignTop)
        controls = QHBoxLayout()
        for button in (self.record_button, self.play_button, self.import_button):
            controls.addWidget(button)
        controls.addStretch(1)
        form = QFormLayout()
        form.addRow("Name", self.name_edit)
        form.addRow("Transcript", self.transcript_edit)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(script_row)
        layout.addLayout(controls)
        layout.addWidget(self.meter)
        layout.addWidget(self.elapsed)
        layout.addWidget(self.report_label)
        layout.addLayout(form)
        layout.addWidget(self.buttons)

        self._poll_timer = QTimer(self, interval=POLL_INTERVAL_MS)
        self._poll_timer.timeout.connect(self._poll_recording)
        self._playback_timer = QTimer(self, interval=100)
        self._playback_timer.timeout.connect(self._poll_playback)
        self._show_script()
        self._update_buttons()
        self.resize(560, 420)

    # -- the sentence to read -----------------------------------------------------------------

    @property
    def script(self) -> str:
        return self.scripts[self.script_index]

    def next_script(self) -> None:
        self.script_index = (self.script_index + 1) % len(self.scripts)
        self._show_script()

    def _show_script(self) -> None:
        self.script_label.setText(f"“{self.script}”")

    # -- recording ----------------------------------------------------------------------------

    @property
    def recording(self) -> bool:
        return self._poll_timer.isActive()

    def _toggle_recording(self) -> None:
        if self.recording:
            self.stop_recording()
        else:
            self.start_recording()

    def start_recording(self) -> None:
        self._stop_playback()
        if not self._open_device():
            return
        self.recorder.read()  # whatever the mic caught before the click is not part of the take
        self._chunks, self._recorded = [], 0
        self.take = self.report = None
        self._show_message("Recording… read the sentence now.", "hint")
        self.record_button.setText("Stop")
        self._poll_timer.start()
        self._update_buttons()

    def _collect(self) -> np.ndarray:
        """Add what the mic captured since the last call to the take, up to MAX_TAKE_S; returns it."""
        room = int(MAX_TAKE_S * STORE_RATE) - self._recorded
        samples = np.asarray(self.recorder.read(), dtype=np.float32)[:max(room, 0)]
        if samples.size:
            self._chunks.append(samples)
            self._recorded += samples.size
        return samples

    def _poll_recording(self) -> None:
        samples = self._collect()
        if samples.size:
            self.meter.set_level(float(np.sqrt(np.mean(samples ** 2))))
        self._show_elapsed(self._recorded / STORE_RATE)
        if self._recorded >= int(MAX_TAKE_S * STORE_RATE):
            self.stop_recording()

    def stop_recording(self) -> None:
        self._poll_timer.stop()
        self._collect()  # what came in between the last poll and the click belongs to the take
        self._close_device()
        self.meter.reset()
        self.record_button.setText("Record again")
        wave = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        self.source = "recorded"
        self.transcript_edit.setText(self.script)
        self.set_take(wave, check_take(wave, STORE_RATE))

    def _show_elapsed(self, seconds: float) -> None:
        self.elapsed.setValue(int(round(seconds * 10)))
        self.elapsed.setFormat(f"{seconds:.1f} / {MAX_TAKE_S:.0f} s")

    # -- a take, recorded or imported -----------------------------------------------------------

    def set_take(self, wave: np.ndarray, report: TakeReport, note: str = "") -> None:
        """Show the verdict on a take (at STORE_RATE); a good one is normalized and becomes saveable."""
        self.report = report
        self.take = normalize_loudness(wave, STORE_RATE) if report.ok else wave
        self._show_elapsed(len(wave) / STORE_RATE)
        if report.ok and not report.warnings:
            self._show_message(f"✓ {report.summary()}. {note}Play it back, name it and save.", "hint")
        elif report.ok:
            m = report.metrics
            items = "".join(f"<li>{warning}</li>" for warning in report.warnings)
            self._show_message(f"✓ Usable take: {m['duration_s']:.1f} s with {m['speech_s']:.1f} s of "
                               f"speech. {note}It can be saved; a better one would clone better:"
                               f"<ul>{items}</ul>", "hint")
        else:
            items = "".join(f"<li>{problem}</li>" for problem in report.problems)
            self._show_message(f"{note}This take will not clone well:<ul>{items}</ul>", "warning")
        self._update_buttons()

    def import_file(self, path: str | Path) -> None:
        """Read an audio file in the background; it becomes the take when ready."""
        self._stop_playback()
        self._import_path = path = Path(path)
        self._show_message(f"Reading {path.name}…", "hint")
        self.take = self.report = None
        self._job = run_job(lambda: load_voice_file(path), "michi-voice-import",
                            self._on_imported, self._on_import_failed)
        self._update_buttons()

    def _on_imported(self, result: tuple[np.ndarray, TakeReport]) -> None:
        wave, report = result
        self._job = None
        self.source = self._import_path.name
        self.transcript_edit.clear()
        if not self.name_edit.text().strip():
            self.name_edit.setText(self._import_path.stem)
        kept, whole = report.metrics["duration_s"], report.metrics["source_duration_s"]
        note = f"Kept the best {kept:.1f} s of {whole:.1f} s. " if kept < whole - 1.0 else ""
        self.set_take(wave, report, note)

    def _on_import_failed(self, message: str) -> None:
        self._job = None
        self._show_message(message, "warning")
        self._update_buttons()

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a voice recording", "", AUDIO_FILTER)
        if path:
            self.import_file(path)

    # -- playback ------------------------------------------------------------------------------

    def _toggle_playback(self) -> None:
        if self._playback_timer.isActive():
            self._stop_playback()
        elif self.take is not None and self._open_device():
            self.recorder.play(self.take)
            self.play_button.setText("Stop playing")
            self._playback_timer.start()

    def _poll_playback(self) -> None:
        if not self.recorder.keep_playing():
            self._stop_playback()

    def _stop_playback(self) -> None:
        if self._playback_timer.isActive():
            self._playback_timer.stop()
            self._close_device()
        self.play_button.setText("Play back")

    # -- saving --------------------------------------------------------------------------------

    def save(self) -> None:
        """Store the take under the name given; stays open with the reason if it cannot."""
        if self.take is None or self.report is None or not self.report.ok:
            return
        self._stop_playback()
        try:
            with VoiceStore(self.store_path) as store:
                voice = store.add(self.name_edit.text(), self.take, STORE_RATE,
                                  transcript=self.transcript_edit.text(), source=self.source)
        except VoiceError as error:
            self._show_message(str(error), "warning")
            return
        self.voice_saved.emit(voice.id)
        self.accept()

    # -- housekeeping ----------------------------------------------------------------------------

    def _update_buttons(self) -> None:
        busy = self.recording or self._job is not None
        self.record_button.setEnabled(self._job is None)
        self.import_button.setEnabled(not busy)
        self.next_script_button.setEnabled(not self.recording)
        self.play_button.setEnabled(not busy and self.take is not None and self.take.size > 0)
        good = self.report is not None and self.report.ok
        self.save_button.setEnabled(not busy and good and bool(self.name_edit.text().strip()))

    def _show_message(self, text: str, style: str) -> None:
        self.report_label.setText(text)
        self.report_label.setObjectName(style)
        self.report_label.style().unpolish(self.report_label)  # the object name picks the theme's colour
        self.report_label.style().polish(self.report_label)

    def _open_device(self) -> bool:
        """Open the device if needed; False (and the reason shown) when it cannot be used."""
        if not self._device_open:
            try:
                self.recorder.start()
            except RuntimeError as error:  # AudioDeviceError: no such device, or the format was refused
                self._show_message(f"The audio device cannot be used: {error}", "warning")
                return False
            self._device_open = True
        return True

    def _close_device(self) -> None:
        if self._device_open:
            self.recorder.stop()
            self._device_open = False

    def done(self, result: int) -> None:
        """Accept, Cancel or closing the window: release the microphone whatever happens."""
        self._poll_timer.stop()
        self._playback_timer.stop()
        self._close_device()
        super().done(result)
