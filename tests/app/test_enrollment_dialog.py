"""The enrollment dialog with real widgets and a real database: a recorder that yields crafted
signals, and once the real AudioIO on a virtual device that plays a WAV file into the mic."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from fake_recorder import FakeRecorder
from PySide6.QtCore import Qt
from scipy import signal

from app.audio.file_device import FileAudioDevice
from app.audio.stream import AudioIO
from app.threads import running_threads
from app.widgets.enrollment_dialog import AudioPortRecorder, EnrollmentDialog, load_scripts
from michi_core.audio import resample
from michi_core.stores.voice_checks import MAX_TAKE_S
from michi_core.stores.voices import STORE_RATE, VoiceStore

RATE = STORE_RATE


def room(seconds: float, dbfs: float = -65.0) -> np.ndarray:
    return np.random.default_rng(0).normal(0, 10 ** (dbfs / 20), int(seconds * RATE)).astype(np.float32)


@pytest.fixture
def good_take(speech_like) -> np.ndarray:
    """Half a second of room, then ~9 s of speech-shaped sound: what a good recording looks like."""
    speech = np.concatenate([np.zeros(RATE // 2, np.float32), speech_like(9.0, seed=0)])
    return speech + room(len(speech) / RATE)


@pytest.fixture
def open_dialog(qtbot, tmp_path):
    def make(recorder) -> EnrollmentDialog:
        dialog = EnrollmentDialog(recorder, tmp_path / "michi.sqlite3")
        qtbot.addWidget(dialog)
        dialog.show()
        return dialog

    yield make
    qtbot.wait_until(lambda: not running_threads(), timeout=20_000)


def record(qtbot, dialog: EnrollmentDialog, recorder: FakeRecorder) -> None:
    qtbot.mouseClick(dialog.record_button, Qt.MouseButton.LeftButton)
    assert dialog.recording and dialog.record_button.text() == "Stop"
    qtbot.wait_until(lambda: recorder.exhausted, timeout=10_000)
    qtbot.wait(2 * 33)  # the last block reaches the take at the next poll or at the click
    qtbot.mouseClick(dialog.record_button, Qt.MouseButton.LeftButton)
    assert not dialog.recording and not recorder.running, "the microphone is released after a take"


def test_a_good_take_is_played_back_named_and_saved(qtbot, open_dialog, good_take, tmp_path):
    recorder = FakeRecorder(good_take)
    dialog = open_dialog(recorder)
    assert dialog.script_label.text() == f"“{load_scripts()[0]}”"
    assert not dialog.save_button.isEnabled() and not dialog.play_button.isEnabled()
    levels = []
    dialog._poll_timer.timeout.connect(lambda: levels.append(dialog.meter.level_db))

    record(qtbot, dialog, recorder)
    assert max(levels) > -30, "the level meter followed the voice"
    assert len(dialog.take) == len(good_take)
    assert dialog.report.ok and dialog.report_label.text().startswith("✓ good take")
    assert dialog.transcript_edit.text() == load_scripts()[0], "the sentence read is the transcript"
    assert not dialog.save_button.isEnabled(), "a voice needs a name"

    qtbot.mouseClick(dialog.play_button, Qt.MouseButton.LeftButton)
    assert dialog.play_button.text() == "Stop playing"
    np.testing.assert_array_equal(recorder.played[-1], dialog.take)
    qtbot.wait_until(lambda: dialog.play_button.text() == "Play back")
    assert not recorder.running

    qtbot.keyClicks(dialog.name_edit, "My voice")
    assert dialog.save_button.isEnabled()
    with qtbot.wait_signal(dialog.voice_saved) as saved:
        qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    assert dialog.result() == EnrollmentDialog.DialogCode.Accepted
    with VoiceStore(tmp_path / "michi.sqlite3") as store:
        voice = store.get(saved.args[0])
        assert (voice.name, voice.transcript, voice.source) == ("My voice", load_scripts()[0], "recorded")
        np.testing.assert_allclose(store.audio(voice.id), dialog.take, atol=1e-4)


@pytest.mark.parametrize("make_signal, advice", [
    (lambda speech: np.zeros(8 * RATE, np.float32), "the recording is silent (its loudest moment is at -120"),
    (lambda speech: np.clip(speech * 8, -1, 1), "move back from the microphone or turn its input gain down"),
    (lambda speech: speech[RATE: RATE + RATE // 2], "too short: 0.5 s with"),
    (lambda speech: np.random.default_rng(3).normal(0, 0.05, 8 * RATE), "no speech heard in 8.0 s"),
], ids=["silence", "clipping", "short", "noise"])
def test_a_bad_take_says_what_to_fix_and_cannot_be_saved(qtbot, open_dialog, good_take, make_signal, advice):
    recorder = FakeRecorder(make_signal(good_take))
    dialog = open_dialog(recorder)
    qtbot.keyClicks(dialog.name_edit, "Take")
    record(qtbot, dialog, recorder)
    assert not dialog.report.ok
    assert advice in dialog.report_label.text()
    assert not dialog.save_button.isEnabled()
    assert dialog.record_button.text() == "Record again"


def test_a_quiet_take_says_what_would_be_better_and_can_be_saved(qtbot, open_dialog, good_take):
    recorder = FakeRecorder(good_take * 0.02)  # the voice near -50 dBFS, the room far below it
    dialog = open_dialog(recorder)
    qtbot.keyClicks(dialog.name_edit, "Quiet")
    record(qtbot, dialog, recorder)
    assert dialog.report.ok, dialog.report.problems
    text = dialog.report_label.text()
    assert text.startswith("✓ Usable take") and "move closer to the microphone" in text
    assert dialog.save_button.isEnabled()


def test_recording_stops_by_itself_at_the_limit(qtbot, open_dialog, speech_like):
    recorder = FakeRecorder(np.concatenate([speech_like(12.0, seed=1), speech_like(12.0, seed=2)]))
    dialog = open_dialog(recorder)
    dialog.start_recording()
    qtbot.wait_until(lambda: not dialog.recording, timeout=10_000)
    assert len(dialog.take) == int(MAX_TAKE_S * RATE)
    assert not recorder.running


def test_importing_a_long_stereo_file_keeps_the_best_15_s(qtbot, open_dialog, speech_like, tmp_path):
    minute = np.concatenate([room(20, -70), speech_like(12.0, seed=4), room(28, -70)])
    path = tmp_path / "Interview.flac"
    sf.write(path, np.stack([minute, minute], axis=1), RATE, format="FLAC")
    dialog = open_dialog(FakeRecorder(np.zeros(0)))
    dialog.import_file(path)
    assert not dialog.import_button.isEnabled(), "one file at a time"
    qtbot.wait_until(lambda: dialog.report is not None, timeout=20_000)
    assert dialog.report.ok, dialog.report.problems
    assert len(dialog.take) <= MAX_TAKE_S * RATE
    assert "Kept the best" in dialog.report_label.text() and "of 60.0 s" in dialog.report_label.text()
    assert dialog.name_edit.text() == "Interview" and dialog.transcript_edit.text() == ""
    with qtbot.wait_signal(dialog.voice_saved):
        qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)


def test_a_corrupt_file_and_a_taken_name_are_explained(qtbot, open_dialog, good_take, tmp_path):
    broken = tmp_path / "broken.ogg"
    broken.write_bytes(b"OggS" + bytes(200))
    dialog = open_dialog(FakeRecorder(good_take))
    dialog.import_file(broken)
    qtbot.wait_until(lambda: "not a readable audio file" in dialog.report_label.text(), timeout=20_000)
    assert dialog.take is None and not dialog.save_button.isEnabled() and dialog.import_button.isEnabled()

    with VoiceStore(tmp_path / "michi.sqlite3") as store:
        store.add("Ada", good_take, RATE)
    record(qtbot, dialog, dialog.recorder)
    qtbot.keyClicks(dialog.name_edit, "ada")
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    assert dialog.isVisible(), "the dialog stays open to pick another name"
    assert "a voice named 'ada' exists already (#1)" in dialog.report_label.text()


def test_a_device_that_cannot_open_is_explained(qtbot, open_dialog, good_take):
    class NoMicrophone(FakeRecorder):
        def start(self) -> None:
            raise RuntimeError("no input device named 'USB mic'. Pick another one in Settings > Audio.")

    dialog = open_dialog(NoMicrophone(good_take))
    qtbot.mouseClick(dialog.record_button, Qt.MouseButton.LeftButton)
    assert not dialog.recording and dialog.record_button.text() == "Record"
    assert dialog.report_label.text() == ("The audio device cannot be used: no input device named 'USB mic'. "
                                          "Pick another one in Settings > Audio.")


@pytest.mark.parametrize("device_rate", [24_000, 48_000])
def test_records_and_plays_through_the_real_audio_layer(qtbot, open_dialog, speech_like, tmp_path,
                                                         device_rate):
    """AudioPortRecorder over AudioIO, on a virtual device whose microphone plays a WAV file at
    twice real time; at 48 kHz the audio layer resamples both ways."""
    good_take = np.concatenate([np.zeros(RATE // 2, np.float32), speech_like(5.5, seed=6)])
    good_take += room(len(good_take) / RATE)
    wav = tmp_path / "mic.wav"
    sf.write(wav, good_take, RATE, subtype="FLOAT")
    device = FileAudioDevice(wav, samplerate=device_rate, speed=2.0)
    dialog = open_dialog(AudioPortRecorder(AudioIO(sd=device)))  # its 2 s rings are shorter than the take
    dialog.start_recording()
    qtbot.wait_until(device.mic_finished.is_set, timeout=20_000)
    qtbot.wait(100)  # the device flags the end as it captures the last block, before delivering it
    dialog.stop_recording()
    assert dialog.report.ok, dialog.report.problems
    extra = len(dialog.take) - len(good_take)
    assert 0 <= extra < RATE, "the whole file, plus what the mic heard until Stop"

    qtbot.mouseClick(dialog.play_button, Qt.MouseButton.LeftButton)
    qtbot.wait_until(lambda: dialog.play_button.text() == "Play back", timeout=20_000)
    played = device.played()
    if device_rate == RATE:  # no resampling on the way: bit for bit
        start = int(np.flatnonzero(played)[0])
        np.testing.assert_allclose(played[start: start + len(dialog.take)], dialog.take, atol=1e-6,
                                   err_msg="the whole take reaches the speaker")
    else:  # resampled on the way out: find where it starts, then it must match throughout
        played = resample(played, device_rate, RATE)
        start = int(np.argmax(signal.correlate(played, dialog.take, mode="valid", method="fft")))
        heard = played[start: start + len(dialog.take)]
        assert np.corrcoef(heard, dialog.take)[0, 1] > 0.99, "the whole take is heard, without gaps"
