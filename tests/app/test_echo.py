"""Echo cancellation on a simulated room: the model must not hear itself, but must hear the user.

The room: the speaker's sound reaches the mic 45 ms later (device buffers + air), at -6 dB,
smeared by a 60 ms reverberant tail, plus mic noise at -50 dBFS. Michi talks (speech-like
audio) for 10 s; the user talks over it from 5 to 7 s (double talk) and alone from 8 to 10 s.
"""

from __future__ import annotations

import numpy as np
import pytest

from app.audio.echo import EchoCanceller, HeadphonesBypass
from michi_core.model.config import CodecConfig

pytest.importorskip("livekit.rtc", reason="the echo canceller needs the livekit package")

RATE = CodecConfig.sample_rate
FRAME = CodecConfig.frame_size
SECONDS = 10
ERLE_MIN_DB = 15.0  # measured 22 dB (19 dB in the first second); a canceller that works gives >= 15
DOUBLE_TALK = (5.0, 7.0)
USER_ALONE = (8.0, 10.0)
MICHI_STOPS = 7.5


def room_echo(far: np.ndarray, delay_ms: float = 45.0, gain: float = 0.5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tail = int(0.06 * RATE)
    impulse = rng.standard_normal(tail) * np.exp(-np.arange(tail) / (0.012 * RATE))
    impulse[0] = 3.0  # the direct path dominates
    impulse *= gain / np.sqrt(np.sum(impulse**2))
    delayed = np.concatenate([np.zeros(int(delay_ms * RATE / 1000)), far])[: len(far)]
    return np.convolve(delayed, impulse)[: len(far)].astype(np.float32)


def span(seconds: tuple[float, float]) -> slice:
    return slice(int(seconds[0] * RATE), int(seconds[1] * RATE))


def db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


def aligned_correlation(output: np.ndarray, clean: np.ndarray, max_lag: int = 600) -> float:
    """Correlation of output with the clean signal at the best lag (the APM delays ~9 ms)."""
    best = 0.0
    for lag in range(0, max_lag, 1):
        a, b = output[lag:], clean[: len(clean) - lag]
        best = max(best, float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b) + 1e-20)))
    return best


@pytest.fixture(scope="module")
def room(speech_like):
    far = speech_like(SECONDS, seed=1)
    far[int(MICHI_STOPS * RATE) :] = 0.0  # Michi stops talking; the user goes on alone
    user = np.zeros(SECONDS * RATE, dtype=np.float32)
    for window in (DOUBLE_TALK, USER_ALONE):
        user[span(window)] = 0.5 * speech_like(window[1] - window[0], seed=2, f0=210.0)
    noise = 0.003 * np.random.default_rng(3).standard_normal(len(far)).astype(np.float32)
    mic = room_echo(far) + user + noise
    return far, user, mic


def run(canceller, mic: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return np.concatenate([
        canceller.process(mic[i : i + FRAME], reference[i : i + FRAME]) for i in range(0, len(mic), FRAME)
    ])


@pytest.fixture(scope="module")
def cleaned(room):
    far, _, mic = room
    return run(EchoCanceller(), mic, far)


def test_echo_drops_by_at_least_15_db_once_converged(room, cleaned):
    far, _, mic = room
    converged = span((1.0, DOUBLE_TALK[0]))  # Michi alone, after the first second
    erle = db(mic[converged]) - db(cleaned[converged])
    assert erle >= ERLE_MIN_DB, f"echo return loss enhancement {erle:.1f} dB, want >= {ERLE_MIN_DB} dB"
    without_reference = run(EchoCanceller(), mic[: int(3 * RATE)], np.zeros(int(3 * RATE), dtype=np.float32))
    blind = db(mic[span((1.0, 3.0))]) - db(without_reference[span((1.0, 3.0))])
    assert blind < 3.0, (
        f"{blind:.1f} dB removed with a silent reference: the reduction must come from the reference"
    )


def test_the_user_alone_comes_through_untouched(room, cleaned):
    _, user, _ = room
    window = span(USER_ALONE)
    assert abs(db(cleaned[window]) - db(user[window])) < 1.0, (  # measured -0.5 dB, correlation 0.90
        f"user speech at {db(user[window]):.1f} dB came out at {db(cleaned[window]):.1f} dB"
    )
    kept = aligned_correlation(cleaned[window], user[window])
    assert kept > 0.85, f"the user's speech correlates only {kept:.2f} with what the model hears"


def test_the_user_is_kept_while_michi_talks(room, cleaned):
    _, user, mic = room
    window = span(DOUBLE_TALK)
    kept = aligned_correlation(cleaned[window], user[window])  # measured 0.81
    before = aligned_correlation(mic[window], user[window])
    assert kept > 0.6, (
        f"during double talk the output correlates {kept:.2f} with the user (mic: {before:.2f})"
    )
    assert db(cleaned[window]) > db(user[window]) - 6.0, "double talk must not mute the user"


def test_headphones_bypass_passes_the_mic_through():
    mic = np.random.default_rng(0).standard_normal(FRAME).astype(np.float32)
    assert HeadphonesBypass().process(mic, np.ones(FRAME, dtype=np.float32)) is mic


def test_frames_must_be_whole_10ms_slices():
    with pytest.raises(AssertionError, match="10 ms"):
        EchoCanceller().process(np.zeros(1000, dtype=np.float32), np.zeros(1000, dtype=np.float32))
