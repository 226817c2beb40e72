"""michi_core.vad, the one webrtcvad wrapper: webrtcvad alone takes loud steady noise for speech,
the level gate does not, and real speech is speech either way."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from michi_core.audio import load_audio
from michi_core.vad import VAD_RATE, SliceVad, gate, slice_levels_db, speech_slices

RATE = 24_000


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("real speech for these tests comes from espeak-ng: apt-get install espeak-ng")
    wav = tmp_path_factory.mktemp("vad") / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav),
                    "Seven bright yellow kites drifted slowly over the old harbour."], check=True)
    return load_audio(wav, RATE)


def test_real_speech_is_speech_and_silence_is_not(speech):
    take = np.concatenate([np.zeros(RATE, np.float32), speech, np.zeros(RATE, np.float32)])
    room = np.random.default_rng(0).normal(0, 10 ** (-65 / 20), len(take)).astype(np.float32)
    for margin in (None, 6.0):
        slices = speech_slices(take + room, RATE, margin_db=margin)
        first_second = int(1 / slices.slice_s)
        # webrtcvad takes the first ~100 ms of any noise for speech while it adapts (measured)
        settled = int(0.2 / slices.slice_s)
        assert not slices.speech[settled:first_second - 5].any(), "the room before the sentence is not speech"
        spoken = slices.speech[first_second: first_second + int(len(speech) / RATE / slices.slice_s)]
        assert spoken.mean() > 0.6, f"margin {margin}: only {spoken.mean():.0%} of the sentence is speech"


def test_the_level_gate_is_what_keeps_a_loud_fan_from_being_speech():
    fan = np.random.default_rng(1).normal(0, 0.1, 4 * RATE).astype(np.float32)  # white noise at -20 dBFS
    assert speech_slices(fan, RATE).speech.any(), "webrtcvad alone takes some of it for speech (measured)"
    gated = speech_slices(fan, RATE, margin_db=6.0)
    assert not gated.speech.any()
    # the 10th percentile of 20 ms slices of white noise that keeps 2/3 of its power below 8 kHz
    assert gated.noise_floor_db == pytest.approx(-20 - 1.8, abs=1.0)


def test_slices_levels_and_gate_work_on_whole_slices_and_scalars():
    vad = SliceVad(aggressiveness=2, slice_ms=30)
    assert vad.slice == VAD_RATE * 30 // 1000
    audio = np.full(3 * vad.slice + 7, 0.1, np.float32)
    assert vad.decisions(audio).shape == (3,), "the last partial slice is not judged"
    levels = slice_levels_db(audio, vad.slice)
    np.testing.assert_allclose(levels, -20.0, atol=1e-3)
    assert slice_levels_db(audio, vad.slice, pre_emphasis=0.95)[0] < -45, "a constant has no high frequencies"
    assert gate(True, -30.0, -50.0, 6.0) and not gate(True, -30.0, -50.0, 6.0, min_dbfs=-25.0)
    assert gate(np.array([True, True, False]), np.array([-30.0, -48.0, -30.0]), -50.0, 6.0).tolist() == [
        True, False, False]
    with pytest.raises(AssertionError, match="10, 20 or 30 ms"):
        SliceVad(slice_ms=25)
