"""The shared trainer on the codec stage: learning, exact resume, streaming after training, CLI."""

import argparse
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from michi_core.model.codec import Codec
from training.stages.codec import CodecStage, CodecStageConfig
from training.trainer import Trainer, add_config_arguments, config_from_arguments


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Six 2-second voiced-like clips: harmonic tones with vibrato and syllable-rate envelopes."""
    folder = tmp_path_factory.mktemp("clips")
    t = np.arange(48_000) / 24_000
    for i in range(6):
        f0 = 110 + 30 * i
        phase = 2 * np.pi * f0 * (t + 0.02 * np.sin(2 * np.pi * 5 * t))
        wave = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) * 0.2
        sf.write(folder / f"clip{i}.wav", wave.astype(np.float32), 24_000)
    return folder


def _config(out, clips, **overrides):
    base = dict(out_dir=str(out), preset="tiny", data=str(clips), batch_size=4, crop_frames=2, lr=2e-3,
                warmup_steps=2, adv_start_step=3, kl_warmup_steps=5, disc_channels=4, eval_every=0,
                save_every=3, log_every=1, valid_share=0.2)
    base.update(overrides)
    return CodecStageConfig(**base)


def test_training_lowers_the_reconstruction_loss(tmp_path, clips):
    history = Trainer(CodecStage(_config(tmp_path / "run", clips, steps=80, lr=5e-3, adv_start_step=1000))).fit()
    mel = [h["mel"] for h in history if "mel" in h]
    assert np.mean(mel[-5:]) < 0.75 * np.mean(mel[:5]), f"mel loss {np.mean(mel[:5]):.3f} -> {np.mean(mel[-5:]):.3f}"
    assert (tmp_path / "run" / "export" / "model.safetensors").is_file()
    assert list((tmp_path / "run" / "tensorboard").iterdir()), "no TensorBoard logs"


def test_a_resumed_run_reaches_exactly_the_state_of_an_uninterrupted_one(tmp_path, clips):
    straight = Trainer(CodecStage(_config(tmp_path / "a", clips, steps=6)))
    straight.fit()
    Trainer(CodecStage(_config(tmp_path / "b", clips, steps=6))).fit(stop_at=3)  # as if killed
    resumed = Trainer(CodecStage(_config(tmp_path / "b", clips, steps=6)))
    resumed.fit(resume=True)
    assert resumed.history[0]["step"] == 1 and len([h for h in resumed.history if "gen" in h]) == 6
    for name in ("codec", "disc"):
        a, b = straight.unwrapped(name).state_dict(), resumed.unwrapped(name).state_dict()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}.{key} differs after resume"
    for name, opt in straight.optimizers.items():
        assert opt.state_dict()["state"][0]["step"] == resumed.optimizers[name].state_dict()["state"][0]["step"]


def test_checkpoints_are_safetensors_and_old_ones_are_pruned(tmp_path, clips):
    Trainer(CodecStage(_config(tmp_path / "run", clips, steps=9, save_every=3, keep_checkpoints=2))).fit()
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step_*"))
    assert checkpoints == ["step_00000006", "step_00000009"]
    latest = tmp_path / "run" / "checkpoints" / "step_00000009"
    assert set(load_file(str(latest / "codec.safetensors"))) == set(Codec(_tiny_codec_config()).state_dict())
    assert json.loads((latest / "trainer_state.json").read_text())["step"] == 9


def _tiny_codec_config():
    from michi_core.model.config import tiny

    return tiny().codec


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
    assert (streamed - offline).abs().max() <= 1e-4


def test_michi_codec_resynthesizes_any_file_through_the_streaming_path(tmp_path, clips):
    from app.cli import main

    Trainer(CodecStage(_config(tmp_path / "run", clips, steps=3))).fit()
    t = np.arange(16_000) / 16_000
    stereo = np.stack([np.sin(2 * np.pi * 200 * t), np.sin(2 * np.pi * 300 * t)], axis=1) * 0.3
    sf.write(tmp_path / "in.wav", stereo.astype(np.float32), 16_000)
    assert main(["codec", "--input", str(tmp_path / "in.wav"), "--output", str(tmp_path / "out.wav"),
                 "--checkpoint", str(tmp_path / "run" / "export")]) == 0
    out, rate = sf.read(str(tmp_path / "out.wav"))
    assert rate == 24_000 and out.ndim == 1 and len(out) == 24_000


def test_the_command_line_overrides_the_config_file(tmp_path):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, CodecStageConfig)
    (tmp_path / "c.json").write_text(json.dumps({"lr": 0.5, "steps": 7}))
    config = config_from_arguments(CodecStageConfig, parser.parse_args(["--config", str(tmp_path / "c.json"),
                                                                       "--lr", "0.1", "--crop-frames", "3"]))
    assert (config.lr, config.steps, config.crop_frames) == (0.1, 7, 3)


def test_the_mel_loss_trains_after_an_evaluation_in_inference_mode():
    """The mel filters are cached: the first evaluation (under torch.inference_mode) must not leave
    an inference tensor that training can never differentiate through afterwards."""
    from training.losses import mel_filterbank, mel_loss

    mel_filterbank.cache_clear()
    real = torch.randn(1, 4800) * 0.1
    with torch.inference_mode():
        mel_loss(real * 0.5, real, 24_000)
    fake = (real * 0.5).requires_grad_()
    mel_loss(fake, real, 24_000).backward()
    assert fake.grad is not None and torch.isfinite(fake.grad).all()
