"""VoiceActivity: speech starts and ends where a listener would say, noise never speaks."""

from __future__ import annotations

import numpy as np
import pytest

from app.audio.vad import VoiceActivity
from michi_core.model.config import CodecConfig

RATE = CodecConfig.sample_rate
FRAME = CodecConfig.frame_size
HANGOVER_MS = 300


def noise(seconds: float, rms: float, slope: float, seed: int = 0) -> np.ndarray:
    """Stationary noise with a 1/f**slope power spectrum above 50 Hz (0 white, 1 pink, 2 brown)."""
    n = int(seconds * RATE)
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    spectrum /= np.maximum(np.fft.rfftfreq(n, 1 / RATE), 50.0) ** (slope / 2)
    x = np.fft.irfft(spectrum, n)
    return (rms * x / x.std()).astype(np.float32)


def hum(seconds: float, amplitude: float = 0.1) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * sum(np.sin(2 * np.pi * 50 * k * t) / k for k in range(1, 8))).astype(np.float32)


def detect(audio: np.ndarray, **options) -> tuple[list[tuple[str, float]], list[bool], list]:
    """Feed whole frames; events as (kind, seconds), per-frame speaking flags, per-frame SpeechEvents."""
    events: list[tuple[str, float]] = []
    vad = VoiceActivity(on_speech_start=lambda at: events.append(("start", at / RATE)),
                        on_speech_end=lambda at: events.append(("end", at / RATE)), **options)
    speaking, reports = [], []
    for i in range(0, len(audio) - FRAME + 1, FRAME):
        reports.append(vad.process(audio[i : i + FRAME]))
        speaking.append(vad.speaking)
    return events, speaking, reports


def onset_and_end(audio: np.ndarray, threshold: float = 0.01) -> tuple[float, float]:
    loud = np.flatnonzero(np.abs(audio) > threshold)
    return loud[0] / RATE, loud[-1] / RATE


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.float32)


@pytest.mark.parametrize("name, audio", [
    ("digital silence", silence(4)),
    ("white noise at -20 dBFS (a fan next to the mic)", noise(4, 0.1, 0)),
    ("pink noise at -30 dBFS", noise(4, 0.03, 1)),
    ("brown rumble at -30 dBFS", noise(4, 0.03, 2)),
    ("mains hum", hum(4)),
])
def test_silence_and_steady_noise_are_never_speech(name, audio):
    events, speaking, _ = detect(audio)
    assert not any(speaking) and not events, f"{name} was taken for speech: {events}"


def test_speech_like_audio_is_detected_from_its_onset(speech_like):
    voice = speech_like(3.0, seed=5)
    audio = np.concatenate([silence(1.0), voice, silence(1.0)])
    onset, _ = onset_and_end(audio)
    events, speaking, _ = detect(audio)
    assert events and events[0][0] == "start", f"no speech detected in 3 s of speech-like audio: {events}"
    assert abs(events[0][1] - onset) < 0.06, (
        f"speech dated to {events[0][1]:.2f} s, it began at {onset:.2f} s"
    )
    voiced_frames = speaking[int(onset * RATE) // FRAME + 1 : int((onset + 1.4) * RATE) // FRAME]
    assert np.mean(voiced_frames) > 0.9, "the first phrase must be held as one stretch of speech"


def test_speech_in_pink_noise_is_still_found(speech_like):
    voice = np.concatenate([silence(2.0), speech_like(3.0, seed=5)])
    onset, _ = onset_and_end(voice)
    audio = voice + noise(len(voice) / RATE, 0.016, 1, seed=4)  # ~14 dB below the speech
    events, _, _ = detect(audio)
    starts = [at for kind, at in events if kind == "start"]
    assert starts, "speech 14 dB above pink noise was missed"
    assert abs(starts[0] - onset) < 0.1, (
        f"first start at {starts[0]:.2f} s; speech began at {onset:.2f} s, noise at 0"
    )


def test_a_short_pause_does_not_end_the_turn_but_a_long_one_does(speech_like):
    word = speech_like(0.6, seed=11)
    word[: int(0.05 * RATE)] = 0  # whole syllables, no phrase gaps inside
    short = np.concatenate([silence(0.5), word, silence(0.15), word, silence(1.0)])
    long = np.concatenate([silence(0.5), word, silence(0.8), word, silence(1.0)])
    short_events, _, _ = detect(short)
    long_events, _, _ = detect(long)
    assert [kind for kind, _ in short_events] == ["start", "end"], (
        f"a 150 ms pause split the turn: {short_events}"
    )
    assert [kind for kind, _ in long_events] == ["start", "end", "start", "end"], (
        f"an 800 ms pause must end the turn: {long_events}"
    )


def test_real_speech_end_is_dated_to_the_last_word_and_reported_after_the_hangover(espeak_speech):
    sentence = espeak_speech("Hello there, what is the weather like today in Paris?")
    audio = np.concatenate([silence(1.0), sentence, silence(1.5)])
    onset, end = onset_and_end(audio)
    events, _, reports = detect(audio, hangover_ms=HANGOVER_MS)
    assert [kind for kind, _ in events] == ["start", "end"], f"one sentence, one turn: {events}"
    assert abs(events[0][1] - onset) < 0.06, f"start {events[0][1]:.2f} s vs onset {onset:.2f} s"
    assert abs(events[1][1] - end) < 0.08, (
        f"end dated {events[1][1]:.2f} s, the last word ended at {end:.2f} s: "
        "response latency is measured from it"
    )
    ended_in = next(i for i, report in enumerate(reports) if report.ended)
    reported_at = (ended_in + 1) * FRAME / RATE
    assert HANGOVER_MS / 1000 <= reported_at - end <= HANGOVER_MS / 1000 + 0.2, (
        f"the end was reported {1000 * (reported_at - end):.0f} ms after the last word; expected the "
        f"{HANGOVER_MS} ms hangover plus at most two frames"
    )
    assert sum(r.started for r in reports) == 1 and sum(r.ended for r in reports) == 1
