"""A live call that hears: the user's spoken question, played into the (fake) microphone, is
recognized by Whisper in the hearing's thread, shows in the transcript as the user's turn, and
brings its passage from the user's documents into the model's context once the utterance ends.

Real audio path (AudioIO on the fake sounddevice), real recognizer (Whisper base), real document
store and embedder; the tiny model (its replies are noise, its listen head untrained)."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest
from app_fixtures import end_every_call, tiny_model
from fake_sounddevice import FakeSoundDevice
from test_call_documents import ScriptedVoiceActivity, documents, injector_for  # noqa: F401 (fixture)

from app.audio.echo import HeadphonesBypass
from app.audio.stream import AudioIO
from app.worker import ConversationLoop
from michi_core.session.engine import DuplexSession, SamplingSettings
from michi_core.session.hearing import Hearing, HearingSettings
from michi_core.stores.conversations import USER

RATE = 24_000
QUESTION = "Who is the mayor of Oakhaven?"


@pytest.fixture(autouse=True)
def every_call_ends(qtbot):
    yield
    end_every_call(qtbot)


def plays(audio: np.ndarray):
    """A mic source: `audio` once, then silence."""
    position = 0

    def source(frames: int, rate: int) -> np.ndarray:
        nonlocal position
        assert rate == RATE
        block = np.zeros(frames, np.float32)
        piece = audio[position:position + frames]
        block[:len(piece)] = piece
        position += frames
        return block

    return source


def test_a_spoken_question_reaches_the_transcript_and_brings_its_passage(documents):  # noqa: F811
    from training.data.voices import VoiceBank

    question = VoiceBank(RATE, threads=1).speak("piper:joe", QUESTION, random.Random(0)).audio
    speech = np.concatenate([np.zeros(RATE // 2, np.float32), question])
    model = tiny_model()
    session = DuplexSession(model, SamplingSettings(seed=0),
                            hearing=Hearing(HearingSettings(), sample_rate=RATE, frame_size=1920))
    audio = AudioIO(sd=FakeSoundDevice(speed=1.0, mic_source=plays(speech)))
    loop = ConversationLoop(session, audio, ScriptedVoiceActivity(), HeadphonesBypass(), injector_for(documents, model))
    audio.start()
    try:
        deadline = time.monotonic() + 90
        while loop.injections == 0 and time.monotonic() < deadline:
            if not loop.step_once():
                time.sleep(0.004)
    finally:
        audio.stop()
        session.close()
    assert loop.injections == 1, "the finished utterance should have brought a passage"
    user_turns = [t for t in loop.snapshot().turns if t.speaker == USER]
    said = " ".join(t.text for t in user_turns).lower()
    assert "who is the mayor of" in said, f"the transcript's user side: {said!r}"  # (the made-up town varies)
    assert [s.text for t in user_turns for s in t.sources] == ["The mayor of Oakhaven is Ada Quill."]
