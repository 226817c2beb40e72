"""The inference worker: the per-frame loop (no event loop needed) and the QThread worker around it.

The audio path is the real one (AudioIO, its rings and clocks) on the fake sounddevice; the
model is the tiny preset. Where a test needs the speaker to lag behind the model, or a
precise moment of speech, it drives the virtual device's callback by hand instead of letting
its thread run at real time.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from app_fixtures import end_every_call, run_until, tiny_model
from fake_sounddevice import FakeSoundDevice, tone

from app.audio.echo import HeadphonesBypass
from app.audio.file_device import CallbackFlags
from app.audio.stream import AudioIO
from app.audio.vad import VoiceActivity
from app.audio_port import SpeechEvents
from app.call_devices import CallDevices
from app.threads import running_threads, start_in_thread
from app.worker import MAX_BACKLOG_FRAMES, CallSetup, ConversationLoop, InferenceWorker
from michi_core.session.engine import DuplexSession, SamplingSettings
from michi_core.stores.conversations import ASSISTANT, ConversationStore

FRAME = 1920
HAND_DRIVEN = 1e-9  # a device speed at which its thread runs one block and then waits for the test


@pytest.fixture(autouse=True)
def every_call_ends(qtbot):
    yield
    end_every_call(qtbot)


def session_for(model, **sampling) -> DuplexSession:
    return DuplexSession(model, SamplingSettings(seed=0, **sampling))


class ScriptedVoiceActivity:
    """A VAD whose decisions the test makes: `start()` / `end()` take effect on the next frame."""

    def __init__(self):
        self.speech_ended_at = None
        self._next = SpeechEvents()
        self.fed = 0

    def start(self):
        self._next = SpeechEvents(started=True)

    def process(self, frame):
        self.fed += len(frame)
        events, self._next = self._next, SpeechEvents()
        return events


def pump(device: FakeSoundDevice, blocks: int) -> None:
    """Run the virtual device's callback `blocks` times from the test thread, as its thread would."""
    stream = device.streams[-1]
    frames, rate = stream.blocksize, int(stream.samplerate)
    for _ in range(blocks):
        indata = device.capture(frames, rate)[:, None].copy()
        outdata = np.zeros((frames, 1), dtype=np.float32)
        stream.callback(indata, outdata, frames, None, CallbackFlags())
        device.render(outdata[:, 0].copy(), rate)


def test_loop_plays_every_model_frame_and_records_both_sides():
    device = FakeSoundDevice(speed=1.0, mic_source=tone(220.0))
    audio = AudioIO(sd=device)
    loop = ConversationLoop(session_for(tiny_model()), audio, VoiceActivity(), HeadphonesBypass())
    audio.start()
    try:
        run_until(loop, 12)
    finally:
        audio.stop()
    user, assistant = loop.recording()
    assert len(user) == len(assistant) == 12 * FRAME, "one user and one model frame per step"
    assert np.abs(user).max() == pytest.approx(0.3, abs=0.01), "headphones: the model hears the mic untouched"
    played = device.played()
    played = played[played != 0]  # the cushion, and any underrun on this busy machine, are silence
    assert len(played) >= 10 * FRAME, "all but the last frame or so must have reached the speaker"
    assert np.allclose(played, assistant[: len(played)], atol=1e-4), (
        "the speaker must play exactly the model's frames, in order, with nothing dropped or repeated"
    )
    assert loop.snapshot().latency.frames == 12


class RecordingSession(DuplexSession):
    """The real session, keeping every step's result so the test knows which frame said what."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.results = []

    def step(self, user_frame, **kwargs):
        self.results.append(super().step(user_frame, **kwargs))
        return self.results[-1]


def assistant_text(turns) -> str:
    return " ".join(t.text for t in turns if t.speaker == ASSISTANT)


def test_interruption_cuts_the_transcript_back_to_what_was_heard():
    device = FakeSoundDevice(speed=HAND_DRIVEN)
    audio = AudioIO(sd=device)
    vad = ScriptedVoiceActivity()
    # Forced text, and a PAD bias that never waits: one letter per frame, each to cut or keep.
    session = RecordingSession(tiny_model(), SamplingSettings(seed=0, pad_bias=-50.0))
    session.say("abcdefgh")
    loop = ConversationLoop(session, audio, vad, HeadphonesBypass())
    audio.start()
    try:
        deadline = time.monotonic() + 5
        while audio.stats().callbacks < 1:  # the device thread's own first block
            assert time.monotonic() < deadline
            time.sleep(0.01)
        # The worker was held up for 4 frames (as much backlog as it keeps), then catches up in a
        # burst: the model is now 4 frames ahead of the speaker, which has played none of it.
        pump(device, 4 * 4)
        for _ in range(4):
            assert loop.step_once()
        said = [r.model_text for r in session.results]
        assert said == ["a", "b", "c", "d"]
        assert assistant_text(loop.snapshot().turns) == "", "nothing was played yet, so no word may be shown"

        pump(device, 4)  # the 40 ms cushion and the first half of frame 0 reach the speaker
        assert assistant_text(loop.snapshot().turns) == "a", "frame 0 is being heard: its word shows"
        vad.start()  # ...and the user starts talking over Michi
        assert loop.step_once()
        assert loop.interruptions == 1
        pump(device, 40)  # long after: anything still queued would have been played by now
        turns = loop.snapshot().turns
    finally:
        audio.stop()
    after_cut = session.results[4].model_text  # said after the interruption, heard after it
    assert after_cut == "e"
    assert assistant_text(turns) == "a e", (
        f"the words of frames 1-3 ({said[1:]!r}) were never played and must not be in the transcript"
    )
    assert [t.interrupted for t in turns if t.speaker == ASSISTANT] == [True, False]
    _, assistant = loop.recording()
    played = device.played()
    heard = np.concatenate([assistant[: FRAME // 2], assistant[4 * FRAME: 5 * FRAME]])
    assert np.allclose(played[played != 0], heard, atol=1e-4), (
        "the speaker must play the first half of frame 0, then (after the cut) frame 4: "
        "frames 1-3 were flushed and must never come out"
    )


def test_muted_mic_feeds_the_model_silence():
    device = FakeSoundDevice(speed=2.0, mic_source=tone(300.0))
    audio = AudioIO(sd=device)
    loop = ConversationLoop(session_for(tiny_model()), audio, VoiceActivity(), HeadphonesBypass())
    audio.start()
    try:
        run_until(loop, 4)
        loop.muted = True
        run_until(loop, 4)
        assert loop.snapshot().mic_level == 0.0, "the meter shows the mute too"
    finally:
        audio.stop()
    user, _ = loop.recording()
    assert np.abs(user[: 4 * FRAME]).max() > 0.1
    assert not user[4 * FRAME:].any(), "while muted, the model must hear nothing at all"


class SlowSession(DuplexSession):
    """A model three times slower than real time (a big model on a small CPU)."""

    def step(self, user_frame, **kwargs):
        time.sleep(0.24)
        return super().step(user_frame, **kwargs)


def test_slower_than_real_time_skips_audio_and_says_so():
    device = FakeSoundDevice(speed=1.0, mic_source=tone(200.0))
    audio = AudioIO(sd=device)
    loop = ConversationLoop(SlowSession(tiny_model()), audio, VoiceActivity(), HeadphonesBypass())
    audio.start()
    try:
        started = time.monotonic()
        while time.monotonic() - started < 2.5:
            loop.step_once() or time.sleep(0.004)
            # At most the kept backlog plus what arrives during one slow step (3 frames) and some
            # scheduling slack; without skipping it would grow by 2 frames every 3, to ~20 by the end.
            assert audio.mic_backlog_samples <= (MAX_BACKLOG_FRAMES + 5) * FRAME, (
                "the delay must stay bounded instead of growing with every slow step"
            )
        update = loop.snapshot()
    finally:
        audio.stop()
    assert update.latency.dropped_frames > 0
    assert update.latency.step_p50_ms > 80
    assert update.warning and "slower than real time" in update.warning and "skipped" in update.warning, (
        "the user must be told, visibly")


# -- the QThread worker -------------------------------------------------------------------------------

def worker_for(model, device, store_path) -> InferenceWorker:
    def open_devices():
        return CallDevices(audio=AudioIO(sd=device), vad=VoiceActivity(), echo_canceller=HeadphonesBypass())

    return InferenceWorker(CallSetup(model=model, model_name="tiny", open_devices=open_devices,
                                     sampling=SamplingSettings(seed=0), system_prompt="Be brief.",
                                     store_path=store_path))


def test_a_device_that_disappears_is_restarted_then_given_up_cleanly(qtbot, tmp_path):
    device = FakeSoundDevice(speed=1.0, mic_source=tone(250.0))
    worker = worker_for(tiny_model(), device, tmp_path / "db.sqlite3")
    warnings, errors, summaries = [], [], []
    worker.warning.connect(warnings.append)
    worker.error.connect(errors.append)
    worker.call_ended.connect(summaries.append)
    with qtbot.wait_signal(worker.call_started, timeout=10_000):
        thread = start_in_thread(worker, worker.start, "test-inference")

    device.unplug()
    qtbot.wait_until(lambda: bool(warnings), timeout=10_000)
    assert "restarted" in warnings[0]
    assert len(device.streams) == 2 and not device.streams[-1].closed, "a new stream replaced the dead one"
    qtbot.wait_until(lambda: worker.snapshot().latency.frames > 10, timeout=10_000)  # the call goes on

    device.fail_open = "Invalid device [PaErrorCode -9996]"
    device.unplug()  # this time it does not come back
    qtbot.wait_until(lambda: bool(summaries), timeout=10_000)
    assert errors and "stopped working" in errors[0]
    summary = summaries[0]
    assert summary.error == errors[0] and summary.conversation_id is not None, "the call so far is saved"
    qtbot.wait_until(thread.isFinished, timeout=5_000)
    assert all(stream.closed for stream in device.streams)
    with ConversationStore(tmp_path / "db.sqlite3") as store:
        assert store.get(summary.conversation_id).duration_s >= summary.frames * 0.08 - 1e-6


def test_a_refused_format_ends_the_call_with_a_clear_message(qtbot, tmp_path):
    device = FakeSoundDevice(fail_open="Invalid sample rate [PaErrorCode -9997]")
    worker = worker_for(tiny_model(), device, tmp_path / "db.sqlite3")
    errors = []
    worker.error.connect(errors.append)
    with qtbot.wait_signal(worker.call_ended, timeout=10_000) as ended:
        thread = start_in_thread(worker, worker.start, "test-inference")
    assert ended.args[0].conversation_id is None and ended.args[0].frames == 0
    assert errors and "could not start" in errors[0] and "Invalid sample rate" in errors[0]
    assert "Settings" in errors[0], "the message says where to fix it"
    qtbot.wait_until(lambda: thread not in running_threads(), timeout=5_000)
