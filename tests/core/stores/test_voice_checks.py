"""The take checks on crafted signals and on real (espeak-ng) speech: each problem a user can make
is caught and named with what to do, and a good take passes."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from michi_core.audio import load_audio, resample
from michi_core.stores.voice_checks import (
    MAX_PEAK,
    TARGET_SPEECH_DBFS,
    best_segment,
    check_take,
    normalize_loudness,
)

RATE = 24_000
SENTENCE = ("The quick brown fox jumps over the lazy dog, while five wizards quietly judge the boxing match. "
            "Sixty zippers were quickly picked from the woven jute bag.")
needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="real speech for these checks comes from espeak-ng: apt-get install espeak-ng (`make test` does)")


def synthesize(text: str, directory, rate: int = RATE) -> np.ndarray:
    wav = directory / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), text], check=True)
    return load_audio(wav, rate)


def room(seconds: float, dbfs: float = -65.0, seed: int = 0) -> np.ndarray:
    """A microphone's background: never digital silence."""
    return np.random.default_rng(seed).normal(0, 10 ** (dbfs / 20), int(seconds * RATE)).astype(np.float32)


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    """~9.3 s of a read sentence, recorded as a microphone would: half a second of room first."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("real speech for these checks comes from espeak-ng: "
                    "apt-get install espeak-ng (`make test` does)")
    voice = synthesize(SENTENCE, tmp_path_factory.mktemp("speech"))
    take = np.concatenate([np.zeros(RATE // 2, np.float32), voice, np.zeros(RATE // 4, np.float32)])
    return take + room(len(take) / RATE)


def dbfs(x: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


@pytest.mark.parametrize("rate", [16_000, 24_000, 44_100])
def test_a_good_take_passes_at_any_rate(speech, rate):
    report = check_take(resample(speech, RATE, rate), rate)
    assert report.ok, report.problems
    assert report.problems == []
    assert 9 < report.metrics["duration_s"] < 11
    assert report.metrics["speech_s"] > 6, "most of a read sentence is speech"
    assert report.metrics["snr_db"] > 30
    assert report.summary().startswith("good take")


def test_digital_silence_says_the_microphone_sends_nothing():
    report = check_take(np.zeros(8 * RATE, np.float32), RATE)
    assert not report.ok
    assert report.problems == [
        "the recording is silent — check that the right microphone is selected and not muted"]


def test_noise_without_speech_is_neither_speech_nor_acceptable():
    noise = np.random.default_rng(1).normal(0, 0.03, 8 * RATE).astype(np.float32)  # a fan at -30 dBFS
    report = check_take(noise, RATE)
    assert not report.ok
    assert report.metrics["speech_s"] == 0
    assert report.problems[0].startswith("no speech heard")
    assert any(p.startswith("too much background noise") for p in report.problems)


def test_clipping_says_to_back_off(speech):
    report = check_take(np.clip(speech * 6, -1, 1), RATE)
    assert not report.ok
    assert report.metrics["clipped_fraction"] > 0.01
    assert any(p.startswith("clipping") and "move back from the microphone" in p for p in report.problems)


def test_too_quiet_says_to_move_closer(speech):
    report = check_take(speech * 0.02, RATE)  # the voice at about -52 dBFS
    assert not report.ok
    assert report.problems == [next(p for p in report.problems if p.startswith("too quiet"))]
    assert "move closer to the microphone" in report.problems[0]


def test_too_short(speech):
    report = check_take(speech[: 3 * RATE], RATE)
    assert not report.ok
    assert report.problems[0].startswith("too short (3.0 s) — record at least 5 s")


def test_loud_background_under_speech(speech):
    noisy = speech + np.random.default_rng(2).normal(0, 0.03, len(speech)).astype(np.float32)
    report = check_take(noisy, RATE)
    assert not report.ok
    assert report.metrics["snr_db"] < 20
    assert any(p.startswith("too much background noise") and "quieter" in p for p in report.problems)


def test_a_take_of_mostly_silence(speech):
    take = np.concatenate([room(10), speech[RATE // 2: 5 * RATE]])
    report = check_take(take, RATE)
    assert not report.ok
    assert len(report.problems) == 1 and report.problems[0].startswith("mostly silence")
    assert "start reading right after pressing Record" in report.problems[0]


@needs_espeak
def test_best_segment_keeps_the_densest_speech_cut_in_pauses(tmp_path):
    hello = synthesize("Hello there.", tmp_path)
    story = synthesize("Seven bright yellow kites drifted over the harbour, and the children chased them "
                       "across the wet sand until the sun went down behind the old lighthouse.", tmp_path)
    clip = room(60)
    for second in (1, 9, 17, 25):  # sparse greetings, then one long sentence at 40 s
        clip[second * RATE: second * RATE + len(hello)] += hello
    clip[40 * RATE: 40 * RATE + len(story)] += story

    segment = best_segment(clip, RATE, max_seconds=15)
    start = next(int(i) for i in np.flatnonzero(clip == segment[0])
                 if np.array_equal(clip[i: i + len(segment)], segment))  # the room noise makes it unique
    assert len(segment) <= 15 * RATE
    assert start / RATE == pytest.approx(40 - 0.25, abs=0.2), "the long sentence, from just before it starts"
    assert (start + len(segment)) / RATE >= 40 + len(story) / RATE - 0.4, "to its end: no word cut off"
    assert check_take(normalize_loudness(segment, RATE), RATE).ok


def test_normalize_loudness_reaches_the_target_without_clipping(speech):
    quiet = normalize_loudness(speech * 0.05, RATE)
    # within a dB: at the new level a few more soft frames clear the speech gate and count
    assert check_take(quiet, RATE).metrics["speech_dbfs"] == pytest.approx(TARGET_SPEECH_DBFS, abs=1.0)
    spiky = speech * 0.05
    spiky[RATE] = 0.9  # one click: the gain stops where the click would clip
    assert np.abs(normalize_loudness(spiky, RATE)).max() == pytest.approx(MAX_PEAK, abs=1e-3)
    assert dbfs(normalize_loudness(spiky, RATE)) < dbfs(quiet)
