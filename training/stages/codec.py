"""Codec stage: train the KL autoencoder + causal HiFi-GAN decoder on speech.

Per step (HiFi-GAN order): the generator autoencodes a batch of random crops; the
discriminators step on (real, fake.detach()); then the generator steps on
    mel_weight * mel L1 + stft_weight * MR-STFT + adv_weight * LSGAN + fm_weight * feature matching
    + kl_weight(step) * KL
with the adversarial terms switched on after `adv_start_step` (reconstruction first: causal
vocoders converge slowly, and a discriminator facing noise only learns to say "noise").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from michi_core.audio import resample, to_mono
from michi_core.model.codec import Codec
from michi_core.model.config import preset

from ..discriminators import Discriminators
from ..losses import (discriminator_loss, feature_matching_loss, generator_adversarial_loss, mel_loss,
                      multi_resolution_stft_loss)
from ..trainer import TrainConfig, step_generator

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3"}


@dataclass
class CodecStageConfig(TrainConfig):
    out_dir: str = "runs/codec"
    preset: str = "small"  # whose CodecConfig to train
    data: str = ""  # a corpus folder from `michi-train data` (or its manifest), or any folder of audio files
    valid_share: float = 0.05  # held-out share of files (by name, stable) when the data has no split
    crop_frames: int = 8  # frames per training crop (8 x 80 ms = 0.64 s)
    batch_size: int = 16
    lr: float = 2e-4
    disc_channels: int = 32
    mel_weight: float = 45.0  # HiFi-GAN's weight
    stft_weight: float = 1.0
    adv_weight: float = 1.0
    fm_weight: float = 2.0
    kl_weight: float = 1e-4
    kl_warmup_steps: int = 2000  # linear ramp of the KL weight from 0
    adv_start_step: int = 2000
    eval_clips: int = 16


class AudioClips:
    """Random crops from many audio files without loading them whole."""

    def __init__(self, paths: list[Path], sample_rate: int):
        self.paths = paths
        self.sample_rate = sample_rate
        self.rates, self.lengths = [], []
        for p in paths:
            info = sf.info(str(p))
            self.rates.append(info.samplerate)
            self.lengths.append(info.frames)

    def __len__(self) -> int:
        return len(self.paths)

    def crop(self, index: int, n_samples: int, generator: torch.Generator) -> np.ndarray:
        """n_samples at the target rate from a random place in file `index` (zero-padded if short)."""
        rate = self.rates[index]
        need = int(np.ceil(n_samples * rate / self.sample_rate))
        start = 0
        if self.lengths[index] > need:
            start = int(torch.randint(0, self.lengths[index] - need + 1, (1,), generator=generator))
        wave, _ = sf.read(str(self.paths[index]), start=start, frames=need, dtype="float32", always_2d=False)
        wave = resample(to_mono(wave), rate, self.sample_rate)[:n_samples]
        return np.pad(wave, (0, n_samples - len(wave)))

    def whole(self, index: int) -> np.ndarray:
        wave, rate = sf.read(str(self.paths[index]), dtype="float32", always_2d=False)
        return resample(to_mono(wave), rate, self.sample_rate)


def find_audio(data: str) -> tuple[list[Path], list[Path]]:
    """(train, valid) files from a folder, or from a corpus manifest's splits."""
    source = Path(data)
    if not data or not source.exists():
        raise SystemExit(f"--data {data!r}: give a folder of audio files or a corpus manifest")
    if source.is_file() or (source / "manifest.sqlite3").is_file():
        from training.data.manifest import Manifest  # the corpus built by `michi-train data`

        manifest = Manifest(source)
        return manifest.audio_paths("train"), manifest.audio_paths("valid")
    files = sorted(p for p in source.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if len(files) < 2:
        raise SystemExit(f"{source}: found {len(files)} audio files; need at least 2 (train + held out)")
    return files, []


class CodecStage:
    name = "codec"

    def __init__(self, config: CodecStageConfig):
        self.config = config
        self.codec_config = preset(config.preset).codec
        train, valid = find_audio(config.data)
        if not valid:  # stable split by name: the same files are held out on every run
            n_valid = max(1, int(round(config.valid_share * len(train))))
            valid, train = train[:n_valid], train[n_valid:]
        self.train_clips = AudioClips(train, self.codec_config.sample_rate)
        self.valid_clips = AudioClips(valid, self.codec_config.sample_rate)
        log.info("codec stage: %d training files, %d held out", len(train), len(valid))

    def build(self, device: torch.device) -> dict[str, torch.nn.Module]:
        self.device = device
        return {"codec": Codec(self.codec_config).to(device),
                "disc": Discriminators(self.config.disc_channels).to(device)}

    def optimizers(self, modules):
        self.modules = modules
        betas = (0.8, 0.99)  # HiFi-GAN's
        return {"codec": torch.optim.AdamW(modules["codec"].parameters(), self.config.lr, betas=betas),
                "disc": torch.optim.AdamW(modules["disc"].parameters(), self.config.lr, betas=betas)}

    def batch(self, step: int, micro: int, rank: int, world: int) -> torch.Tensor:
        cfg = self.config
        per_rank = max(1, cfg.batch_size // (world * cfg.grad_accum))
        g = step_generator(cfg.seed, step, micro, rank)
        n = cfg.crop_frames * self.codec_config.frame_size
        indices = torch.randint(0, len(self.train_clips), (per_rank,), generator=g).tolist()
        return torch.from_numpy(np.stack([self.train_clips.crop(i, n, g) for i in indices]))  # (b, t)

    def kl_weight(self, step: int) -> float:
        return self.config.kl_weight * min(1.0, step / max(1, self.config.kl_warmup_steps))

    def train_step(self, batch: torch.Tensor, step: int, ctx) -> dict[str, float]:
        cfg = self.config
        sr = self.codec_config.sample_rate
        real = batch.to(self.device)
        codec, disc = self.modules["codec"], self.modules["disc"]
        g = step_generator(cfg.seed + 1, step, ctx.micro)
        with ctx.autocast():
            fake, posterior = codec(real, generator=g if real.device.type == "cpu" else None)
        fake = fake.float()
        logs = {}
        adversarial = step >= cfg.adv_start_step
        if adversarial:
            with ctx.autocast():
                real_scores, _ = disc(real)
                fake_scores, _ = disc(fake.detach())
            d_loss = discriminator_loss(real_scores, fake_scores)
            ctx.backward(d_loss, ["disc"])
            ctx.step("disc")
            logs["disc"] = float(d_loss)
        mel = mel_loss(fake, real, sr)
        stft = multi_resolution_stft_loss(fake, real)
        kl = posterior.kl()
        g_loss = cfg.mel_weight * mel + cfg.stft_weight * stft + self.kl_weight(step) * kl
        if adversarial:
            with ctx.autocast():
                fake_scores, fake_features = disc(fake)
                _, real_features = disc(real)
            adv = generator_adversarial_loss(fake_scores)
            fm = feature_matching_loss(real_features, fake_features)
            g_loss = g_loss + cfg.adv_weight * adv + cfg.fm_weight * fm
            logs.update(adv=float(adv), fm=float(fm))
        # The generator's backward reaches the discriminators' weights too: keep their own
        # (accumulated) gradients as they were, so the next D step sees only the D loss.
        saved = [None if p.grad is None else p.grad.clone() for p in disc.parameters()]
        ctx.backward(g_loss, ["codec"])
        for p, grad in zip(disc.parameters(), saved):
            p.grad = grad
        ctx.step("codec")
        logs.update(gen=float(g_loss), mel=float(mel), stft=float(stft), kl=float(kl))
        return logs

    @torch.no_grad()
    def evaluate(self, step: int) -> dict[str, float]:
        """Held-out clips: mel distance, MR-STFT, latent statistics."""
        codec = self.modules["codec"]
        codec = codec.module if hasattr(codec, "module") else codec
        fs, sr = self.codec_config.frame_size, self.codec_config.sample_rate
        mels, stfts, means, stds = [], [], [], []
        for i in range(min(self.config.eval_clips, len(self.valid_clips))):
            wave = self.valid_clips.whole(i)
            wave = wave[: len(wave) // fs * fs][: 10 * sr // fs * fs]
            if len(wave) < fs:
                continue
            real = torch.from_numpy(wave)[None].to(self.device)
            posterior = codec.encode(real)
            fake = codec.decode(posterior.mean)
            mels.append(float(mel_loss(fake, real, sr)))
            stfts.append(float(multi_resolution_stft_loss(fake, real)))
            means.append(float(posterior.mean.mean()))
            stds.append(float(posterior.mean.std()))
        if not mels:
            return {}
        return {"mel_distance": float(np.mean(mels)), "mr_stft": float(np.mean(stfts)),
                "latent_mean": float(np.mean(means)), "latent_std": float(np.mean(stds))}

    def export(self, directory: Path) -> None:
        codec = self.modules["codec"]
        codec = codec.module if hasattr(codec, "module") else codec
        codec.save_pretrained(directory)
        log.info("exported the codec to %s", directory)


def add_codec_command(subparsers) -> None:
    from ..trainer import add_config_arguments

    p = subparsers.add_parser("codec", help="train the codec (autoencoder + causal HiFi-GAN)")
    add_config_arguments(p, CodecStageConfig)
    p.set_defaults(func=run_codec_command)


def run_codec_command(args) -> int:
    from ..trainer import Trainer, config_from_arguments

    config = config_from_arguments(CodecStageConfig, args)
    Trainer(CodecStage(config)).fit(resume=args.resume)
    return 0
