"""The hearing: real speech in, the right words out, in order, at times inside the utterance;
silence and noise give no words; a failing recognizer never stops anything.

Whisper base (int8, one thread) on a few seconds of audio: the real ARCTIC recording (a human
voice) and a piper sentence."""

from __future__ import annotations

import random
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
