"""The codec stage on the shared trainer: the mel autoencoder learns (its loss falls, and a briefly
trained tiny codec reconstructs held-out mels better than an untrained one), resumes exactly, keeps
safetensors checkpoints, streams after training, and `michi codec` runs it."""

import argparse
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file
from torch.nn import functional as F

from michi_core.model.codec import Codec
from michi_core.model.config import tiny
from training.stages.codec import CodecStage, CodecStageConfig
from training.trainer import Trainer, add_config_arguments, config_from_arguments

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Eight 2-second voiced-like clips: harmonic tones with vibrato and syllable-rate envelopes."""
    folder = tmp_path_factory.mktemp("clips")
    t = np.arange(48_000) / 24_000
    for i in range(8):
        f0 = 100 + 25 * i
        phase = 2 * np.pi * f0 * (t + 0.02 * np.sin(2 * np.pi * (3 + i) * t))
        wave = sum(np.sin(k * phase) / k for k in range(1, 9)) * (0.5 + 0.5 * np.sin(2 * np.pi * (2 + i / 2) * t))
        sf.write(folder / f"clip{i}.wav", (0.15 * wave).astype(np.float32), 24_000)
    return folder


def _config(out, clips, **overrides):
    base = dict(out_dir=str(out), preset="tiny", data=str(clips), batch_size=8, crop_frames=4, lr=3e-3,
                warmup_steps=2, kl_warmup_steps=5, eval_every=0, save_every=3, log_every=1, valid_share=0.25)
    base.update(overrides)
    return CodecStageConfig(**base)


def _held_out_mel_distance(codec: Codec, stage: CodecStage) -> float:
    with torch.no_grad():
        return float(np.mean([F.l1_loss(codec.decode_mel(codec.encode_mel(m.float()[None]).mean), m.float()[None])
                              for m in stage.valid_mels.mels]))


def test_training_lowers_the_loss_and_beats_an_untrained_codec_on_held_out_mels(tmp_path, clips):
    stage = CodecStage(_config(tmp_path / "run", clips, steps=120))
    trainer = Trainer(stage)
    untrained = Codec(tiny().codec).eval()
    untrained.load_state_dict(trainer.unwrapped("codec").state_dict())
    history = trainer.fit()
    mel = [h["mel"] for h in history if "mel" in h]
    assert np.mean(mel[-10:]) < 0.6 * np.mean(mel[:10]), f"mel loss {np.mean(mel[:10]):.3f} -> {np.mean(mel[-10:]):.3f}"
    trained = Codec.from_pretrained(tmp_path / "run" / "export")
    before, after = _held_out_mel_distance(untrained, stage), _held_out_mel_distance(trained, stage)
    assert after < 0.6 * before, (before, after)
    assert list((tmp_path / "run" / "tensorboard").iterdir()), "no TensorBoard logs"


def test_a_resumed_run_reaches_exactly_the_state_of_an_uninterrupted_one(tmp_path, clips):
    straight = Trainer(CodecStage(_config(tmp_path / "a", clips, steps=6)))
    straight.fit()
    Trainer(CodecStage(_config(tmp_path / "b", clips, steps=6))).fit(stop_at=3)  # as if killed
    resumed = Trainer(CodecStage(_config(tmp_path / "b", clips, steps=6)))
    resumed.fit(resume=True)
    assert resumed.history[0]["step"] == 1 and len([h for h in resumed.history if "loss" in h]) == 6
    a, b = straight.unwrapped("codec").state_dict(), resumed.unwrapped("codec").state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), f"codec.{key} differs after resume"
    assert straight.optimizers["codec"].state_dict()["state"][0]["step"] == \
        resumed.optimizers["codec"].state_dict()["state"][0]["step"]


def test_checkpoints_are_safetensors_of_the_autoencoder_only_and_old_ones_are_pruned(tmp_path, clips):
    Trainer(CodecStage(_config(tmp_path / "run", clips, steps=9, save_every=3, keep_checkpoints=2))).fit()
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step_*"))
    assert checkpoints == ["step_00000006", "step_00000009"]
    latest = tmp_path / "run" / "checkpoints" / "step_00000009"
    saved = set(load_file(str(latest / "codec.safetensors")))
    assert saved == set(Codec(tiny().codec).state_dict()) and not any(k.startswith("vocoder.") for k in saved)
    assert json.loads((latest / "trainer_state.json").read_text())["step"] == 9


def test_the_trained_codec_streams_exactly_like_it_decodes_offline(tmp_path, clips):
    Trainer(CodecStage(_config(tmp_path / "run", clips, steps=6))).fit()
    codec = Codec.from_pretrained(tmp_path / "run" / "export")
    wave, _ = sf.read(str(clips / "clip3.wav"), dtype="float32")
    fs = codec.config.frame_size
    wave = torch.from_numpy(wave[: 10 * fs])[None]
    with torch.no_grad():
        offline = codec.decode(codec.encode(wave).mean)
        codec.start_streaming(1)
        streamed = torch.cat([codec.decode(codec.encode(wave[:, i * fs:(i + 1) * fs]).mean) for i in range(10)], 1)
    assert (streamed - offline).abs().max() <= 2e-4 * offline.abs().max()  # float summation order only


def test_michi_codec_resynthesizes_any_file_through_the_streaming_path(tmp_path, clips):
    from app.cli import main

    Trainer(CodecStage(_config(tmp_path / "run", clips, steps=3))).fit()
    t = np.arange(16_000) / 16_000
    stereo = np.stack([np.sin(2 * np.pi * 200 * t), np.sin(2 * np.pi * 300 * t)], axis=1) * 0.3
    sf.write(tmp_path / "in.wav", stereo.astype(np.float32), 16_000)
    assert main(["codec", "--input", str(tmp_path / "in.wav"), "--output", str(tmp_path / "out.wav"),
                 "--checkpoint", str(tmp_path / "run" / "export")]) == 0
    out, rate = sf.read(str(tmp_path / "out.wav"))
    assert rate == 24_000 and out.ndim == 1 and len(out) == 13 * 1920  # 1 s in whole frames, aligned with the input


def test_the_command_line_overrides_the_config_file(tmp_path):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, CodecStageConfig)
    (tmp_path / "c.json").write_text(json.dumps({"lr": 0.5, "steps": 7}))
    config = config_from_arguments(CodecStageConfig, parser.parse_args(["--config", str(tmp_path / "c.json"),
                                                                       "--lr", "0.1", "--crop-frames", "3"]))
    assert (config.lr, config.steps, config.crop_frames) == (0.1, 7, 3)
