"""The hearing: real speech in, the right words out, in order, at times inside the utterance;
silence and noise give no words; a failing recognizer never stops anything.

Whisper base (int8, one thread) on a few seconds of audio: the real ARCTIC recording (a human
voice) and a piper sentence."""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest

from michi_core.audio import load_audio
from michi_core.session.hearing import (
    HeardUtterance,
    HeardWord,
    Hearing,
    HearingSettings,
    WhisperRecognizer,
    comparable,
)

RATE = 24_000
FRAME = 1920
FRAME_S = FRAME / RATE
ARCTIC_TEXT = "He turned sharply, and faced Gregson across the table."
PIPER_TEXT = "Could you remind me to water the plants on Sunday morning?"


@pytest.fixture(scope="module")
def arctic() -> np.ndarray:
    from training.eval.real_speech import fetch_arctic

    return load_audio(fetch_arctic() / "arctic_a0009.wav", RATE)


@pytest.fixture(scope="module")
def piper_sentence() -> np.ndarray:
    from training.data.voices import VoiceBank

    return VoiceBank(RATE, threads=1).speak("piper:joe", PIPER_TEXT, random.Random(0)).audio


@pytest.fixture(scope="module")
def hearing():
    heard = Hearing(HearingSettings(model="base")).start()
    yield heard
    heard.stop()


def frames_of(*pieces: np.ndarray) -> list[np.ndarray]:
    audio = np.concatenate(pieces).astype(np.float32)
    audio = np.pad(audio, (0, -len(audio) % FRAME))
    return [audio[i:i + FRAME] for i in range(0, len(audio), FRAME)]


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.float32)


def hear(hearing: Hearing, frames: list[np.ndarray], realtime: bool = False) -> list:
    """Feed frames (at the pace of a live call when `realtime`), then everything heard."""
    hearing.reset()
    started = time.perf_counter()
    for i, frame in enumerate(frames):
        hearing.feed(frame)
        if realtime:
            time.sleep(max(0.0, started + (i + 1) * FRAME_S - time.perf_counter()))
    assert hearing.wait_idle(60), "the hearing never finished the audio it was fed"
    return hearing.poll()


def words_of(items: list) -> list[HeardWord]:
    return [item for item in items if isinstance(item, HeardWord)]


def word_errors(expected: str, words: list[HeardWord]) -> float:
    import jiwer

    reference = " ".join(comparable(w) for w in expected.split())
    return jiwer.wer(reference, " ".join(comparable(w.text) for w in words) or "<nothing>")


def test_real_speech_words_arrive_in_order_inside_the_utterance_and_never_before_spoken(hearing, arctic):
    lead = 0.6
    frames = frames_of(silence(lead), arctic, silence(1.2))
    items = hear(hearing, frames, realtime=True)
    words = words_of(items)
    assert word_errors(ARCTIC_TEXT, words) <= 0.1, f"heard {[w.text for w in words]} for {ARCTIC_TEXT!r}"
    starts = [w.start_s for w in words]
    assert starts == sorted(starts), f"words out of order: {[(w.text, w.start_s) for w in words]}"
    speech_end = lead + len(arctic) / RATE
    for w in words:
        assert lead - 0.3 <= w.start_s < w.end_s <= speech_end + 0.3, f"{w} lies outside the speech"
        # No word is known before it was spoken: the frame it arrived at is at or after its end.
        assert (w.known_frame + 1) * FRAME_S >= w.end_s - 0.15, f"{w.text!r} arrived before it was said: {w}"
    utterances = [item for item in items if isinstance(item, HeardUtterance)]
    assert len(utterances) == 1 and word_errors(ARCTIC_TEXT, words) == word_errors(
        ARCTIC_TEXT, [HeardWord(t, 0, 0, 0, True, 0) for t in utterances[0].text.split()])
    assert hearing.restarts == 0


def test_synthesized_sentence_and_two_utterances(hearing, piper_sentence, arctic):
    frames = frames_of(silence(0.3), piper_sentence, silence(1.0), arctic, silence(1.0))
    items = hear(hearing, frames)
    utterances = [item for item in items if isinstance(item, HeardUtterance)]
    assert [u.index for u in utterances] == [0, 1], f"expected two utterances, got {utterances}"
    first = [w for w in words_of(items) if w.utterance == 0]
    second = [w for w in words_of(items) if w.utterance == 1]
    assert word_errors(PIPER_TEXT, first) <= 0.1, f"heard {[w.text for w in first]} for {PIPER_TEXT!r}"
    assert word_errors(ARCTIC_TEXT, second) <= 0.1, f"heard {[w.text for w in second]}"
    assert max(w.end_s for w in first) < min(w.start_s for w in second)


@pytest.mark.parametrize("kind", ["silence", "white noise", "loud clipped noise", "hum"])
def test_no_words_from_audio_without_speech(hearing, kind):
    rng = np.random.default_rng(0)
    n = 4 * RATE
    audio = {
        "silence": np.zeros(n, np.float32),
        "white noise": 0.05 * rng.standard_normal(n),
        "loud clipped noise": np.clip(0.8 * rng.standard_normal(n), -1, 1),
        "hum": 0.3 * np.sin(2 * np.pi * 50 * np.arange(n) / RATE),
    }[kind]
    items = hear(hearing, frames_of(audio.astype(np.float32), silence(1.0)))
    assert items == [], f"{kind} produced {items}"


def test_no_words_from_a_buzz_the_vad_takes_for_speech(hearing):
    """A voice-like buzz (180 Hz, syllable-rate tremolo) opens an utterance, and Whisper base
    answers it with "I'm sorry." at low confidence: its own doubt must keep that out."""
    t = np.arange(3 * RATE) / RATE
    buzz = (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 4 * t))).astype(np.float32)
    passes = len(hearing.pass_seconds)
    items = hear(hearing, frames_of(buzz, silence(1.0)))
    assert len(hearing.pass_seconds) > passes, "the VAD should have let the buzz through to Whisper"
    assert items == [], f"the buzz produced {items}"


@pytest.mark.parametrize("model", ["base", "tiny.en"])
@pytest.mark.parametrize("voice,text", [
    ("de", "Guten Morgen, ich möchte heute Abend ins Kino gehen und danach etwas essen."),
    ("es", "Hola, ¿dónde está la estación de tren más cercana, por favor?"),
])
def test_no_english_words_invented_for_another_language(model, voice, text):
    """Told the speech is English, base translates German into fluent English and tiny.en makes up
    low-confidence words: neither may reach the session."""
    from michi_core.audio import resample
    from training.data.espeak import Espeak

    spoken = Espeak.get().synthesize(text, voice)
    heard = Hearing(HearingSettings(model=model)).start()
    try:
        items = hear(heard, frames_of(silence(0.3), resample(spoken.audio, spoken.sample_rate, RATE), silence(1.0)))
    finally:
        heard.stop()
    assert words_of(items) == [], f"{voice} speech produced {[w.text for w in words_of(items)]}"


class _FailingOnce:
    """A recognizer factory whose first recognizer raises on its first pass; later ones are real."""

    def __init__(self):
        self.built = 0

    def __call__(self, settings):
        self.built += 1
        if self.built == 1:
            return _Raising()
        return WhisperRecognizer(settings)


class _Raising:
    def transcribe(self, audio):
        raise RuntimeError("recognizer crashed (test)")


def test_a_recognizer_that_raises_restarts_and_the_next_utterance_is_heard(arctic):
    factory = _FailingOnce()
    hearing = Hearing(HearingSettings(model="tiny.en", restart_after_s=0.05), recognizer_factory=factory).start()
    try:
        for frame in frames_of(silence(0.3), arctic, silence(1.0)):
            hearing.feed(frame)  # never raises, never blocks
        assert hearing.wait_idle(60)
        assert hearing.restarts == 1 and factory.built >= 1
        assert words_of(hearing.poll()) == []  # the failed utterance is lost, not invented
        items = hear(hearing, frames_of(silence(0.3), arctic, silence(1.0)))
        assert word_errors(ARCTIC_TEXT, words_of(items)) <= 0.1
    finally:
        hearing.stop()


# -- in the session: the words reach the backbone, and the step never waits -----------------------------
@pytest.fixture
def tiny_session_model(one_torch_thread):
    import torch

    from michi_core.model.config import tiny
    from michi_core.model.model import MichiModel

    torch.manual_seed(0)
    return MichiModel(tiny()).eval()


def test_the_session_reads_the_heard_words_as_text_from_the_frame_they_arrive(tiny_session_model, hearing,
                                                                             arctic):
    from michi_core.session.engine import DuplexSession, SamplingSettings

    frames = frames_of(silence(0.3), arctic, silence(0.5))
    settings = SamplingSettings(seed=1, text_temperature=0)
    session = DuplexSession(tiny_session_model, settings, keep_debug=True, hearing=hearing)
    steps = list(session.run(frames))  # goes on stepping (silence) until the last word is read
    deaf = DuplexSession(tiny_session_model, settings, keep_debug=True)
    plain = [deaf.step(frame) for frame in (frames + [silence(FRAME_S)] * len(steps))[:len(steps)]]
    words = [w for step in steps for w in step.user_words]
    assert word_errors(ARCTIC_TEXT, words) <= 0.1, f"the session got {[w.text for w in words]}"
    assert "".join(step.user_text for step in steps).split() == [w.text for w in words]
    fed = [step.user_token for step in steps if step.user_token != tiny_session_model.tokenizer.pad_id]
    assert tiny_session_model.tokenizer.decode(fed) == "".join(" " + w.text for w in words), (
        "every token of every heard word is read by the backbone, in order")
    first = next(i for i, step in enumerate(steps) if step.user_token != tiny_session_model.tokenizer.pad_id)
    assert all(a.text_logits.equal(b.text_logits) for a, b in zip(plain[:first], steps[:first])), (
        "before the first word arrives the session computes exactly what a session without hearing does")
    assert not plain[first].text_logits.equal(steps[first].text_logits), "the backbone read the word"
    assert any(step.user_utterance == " ".join(w.text for w in words) for step in steps)
    session.hearing = None  # the module's hearing lives on for the other tests


class _Slow:
    """A recognizer whose passes take 3 s; it says when its first pass is running."""

    def __init__(self):
        self.running = threading.Event()
        self.done = threading.Event()

    def transcribe(self, audio):
        self.running.set()
        time.sleep(3.0)
        self.done.set()
        return []


class _AlwaysRaising:
    def transcribe(self, audio):
        raise RuntimeError("recognizer crashed (test)")


def test_the_step_never_waits_for_the_recognizer(tiny_session_model, arctic):
    from michi_core.session.engine import DuplexSession

    slow = _Slow()
    session = DuplexSession(tiny_session_model, hearing=Hearing(HearingSettings(), recognizer_factory=lambda _: slow))
    try:
        frames = iter(frames_of(silence(0.3), arctic))
        deadline = time.perf_counter() + 60
        while not slow.running.is_set() and time.perf_counter() < deadline:
            session.step(next(frames, silence(FRAME_S)))
        assert slow.running.is_set(), "the recognizer never got a pass to run"
        during = 0
        while not slow.done.is_set():
            session.step(next(frames, silence(FRAME_S)))
            during += 1
        assert during >= 5, f"only {during} steps ran during a 3 s recognizer pass: the step waited for it"
    finally:
        session.close()


def test_a_recognizer_that_always_raises_never_stops_the_call(tiny_session_model, arctic):
    from michi_core.session.engine import DuplexSession

    broken = Hearing(HearingSettings(restart_after_s=0.05), recognizer_factory=lambda settings: _AlwaysRaising())
    session = DuplexSession(tiny_session_model, hearing=broken)
    try:
        frames = frames_of(silence(0.3), arctic, silence(1.0), arctic, silence(1.0))
        steps = list(session.run(frames))
        assert len(steps) >= len(frames) and all(len(step.audio) == FRAME for step in steps)
        assert broken.restarts >= 2, "each utterance's failure restarts the hearing"
        assert all(step.user_text == "" for step in steps), "a failing recognizer invents nothing"
    finally:
        session.close()


def test_michi_chat_transcript_has_the_users_words_from_a_real_recording(tmp_path, arctic):
    """`michi chat --input clip.wav --transcript t.json`: the user side is the recognizer's words."""
    import json

    from michi_core.audio import save_audio
    from michi_core.cli import main

    clip = tmp_path / "arctic.wav"
    save_audio(clip, np.concatenate([silence(0.5), arctic, silence(0.5)]), RATE)
    transcript = tmp_path / "t.json"
    assert main(["chat", "--preset", "tiny", "--input", str(clip), "--output", str(tmp_path / "reply.wav"),
                 "--transcript", str(transcript), "--seed", "0"]) == 0
    data = json.loads(transcript.read_text())
    words = [w for entry in data["user"] for w in entry["words"]]
    heard = [HeardWord(w["text"], w["start"], w["end"], 0, w["final"], 0) for w in words]
    assert word_errors(ARCTIC_TEXT, heard) <= 0.1, f"the transcript's user side: {data['user_text']!r}"
    assert data["user_text"].split() == [w["text"] for w in words]
    assert all(entry["frame"] * FRAME_S >= entry["words"][-1]["end"] - 0.15 for entry in data["user"])


def test_a_file_driven_session_waits_for_the_recognizer_instead_of_queueing_every_frame():
    """max_backlog_s (michi chat): feed() blocks while that much audio is unheard, then goes on; the
    live default never blocks. A recognizer that takes its time to load holds the hearing thread."""
    import threading

    loaded = threading.Event()

    def slow_to_load(settings):
        loaded.wait(timeout=30)
        return _Slow()

    bounded = Hearing(HearingSettings(max_backlog_s=0.4), recognizer_factory=slow_to_load).start()
    limit = 5  # 0.4 s of 80 ms frames
    fed = []
    feeder = threading.Thread(target=lambda: [fed.append(bounded.feed(np.zeros(1920, np.float32)))
                                              for _ in range(3 * limit)])
    feeder.start()
    feeder.join(timeout=2.0)
    assert feeder.is_alive() and len(fed) == limit, f"fed {len(fed)} frames while nothing was heard"
    loaded.set()
    feeder.join(timeout=30)
    assert not feeder.is_alive() and len(fed) == 3 * limit
    bounded.stop()

    live = Hearing(HearingSettings(), recognizer_factory=slow_to_load)
    loaded.clear()
    live.start()
    started = time.perf_counter()
    for _ in range(3 * limit):
        live.feed(np.zeros(1920, np.float32))
    assert time.perf_counter() - started < 1.0, "a live call's feed() never waits"
    loaded.set()
    live.stop()
