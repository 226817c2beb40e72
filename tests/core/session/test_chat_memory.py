"""`michi chat` and `michi codec` stream their files: what they hold does not grow with the input.

Measured with tracemalloc (numpy buffers and Python objects: where the per-frame audio, results
and transcript records used to pile up, +16-19 kB a frame), on 22 s and 44 s of input with the
tiny preset: both past the point where its 256-position window is full (after that the session
drops old frames, so what it holds is bounded by design). The hour-long measurement of the whole
process is benchmarks/memory_bench.py.
"""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
import torch

from michi_core.cli import main
from michi_core.model.config import tiny
from michi_core.model.model import MichiModel
from michi_core.session.chat import AudioFrames, run_chat

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py: tiny-model ops

SHORT_S, LONG_S = 22.0, 44.0
MAX_GROWTH_BYTES = 400_000  # the old code grew by ~4 MB here (275 more frames, plus the whole input)


def speech_like(path, seconds: float, rate: int = 16_000):
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 140 * t) * np.clip(np.sin(2 * np.pi * 2 * t), 0, 1)
    sf.write(str(path), np.stack([wave, wave], axis=1), rate)  # stereo 16 kHz: downmixed and resampled
    return path


def traced_peak(run) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MichiModel(tiny()).eval()


def test_chat_holds_the_same_for_22_s_and_44_s(model, tmp_path):
    warm_up = speech_like(tmp_path / "warm.wav", 1.0)
    run_chat(model, str(warm_up), str(tmp_path / "warm_reply.wav"), transcript_path=str(tmp_path / "w.json"))
    peaks = {}
    for seconds in (SHORT_S, LONG_S):
        user = speech_like(tmp_path / f"user{seconds:g}.wav", seconds)
        transcript = tmp_path / f"t{seconds:g}.json"

        def chat(user=user, transcript=transcript, seconds=seconds):
            run_chat(model, str(user), str(tmp_path / f"reply{seconds:g}.wav"), transcript_path=str(transcript),
                     seed=0)

        peaks[seconds] = traced_peak(chat)
        data = json.loads(transcript.read_text())
        assert data["input_frames"] == int(np.ceil(seconds * 12.5))
        assert len(data["steps"]) == data["output_frames"] >= data["input_frames"]
        reply, rate = sf.read(tmp_path / f"reply{seconds:g}.wav")
        assert rate == 24_000 and len(reply) == data["output_frames"] * 1920
    assert peaks[LONG_S] - peaks[SHORT_S] < MAX_GROWTH_BYTES, peaks


def test_codec_holds_the_same_for_22_s_and_44_s(model, tmp_path, capsys):
    checkpoint = tmp_path / "ckpt"
    model.save_pretrained(checkpoint)
    peaks = {}
    for seconds in (SHORT_S, LONG_S):
        user = speech_like(tmp_path / f"user{seconds:g}.wav", seconds)
        output = tmp_path / f"out{seconds:g}.wav"
        argv = ["codec", "--checkpoint", str(checkpoint), "--input", str(user), "--output", str(output)]
        if seconds == SHORT_S:
            assert main(argv) == 0, capsys.readouterr().err  # warm-up
        peaks[seconds] = traced_peak(lambda argv=argv: main(argv))
        assert sf.info(str(output)).frames == int(np.ceil(seconds * 12.5)) * 1920
    assert peaks[LONG_S] - peaks[SHORT_S] < MAX_GROWTH_BYTES, peaks


def test_streamed_input_matches_the_whole_file_read(tmp_path):
    """Reading in blocks (resampled as a stream) gives the audio a whole-file read gives."""
    from michi_core.audio import load_audio, pad_to_frames

    path = speech_like(tmp_path / "user.wav", 9.3)
    frames = np.concatenate(list(AudioFrames(path, 24_000, 1920)))
    whole = pad_to_frames(load_audio(path, 24_000), 1920)
    assert len(frames) == len(whole)
    assert np.abs(frames - whole).max() < 2e-3, "block edges must not click"
