"""Codec stage: train the mel autoencoder between the fixed mel analysis and the frozen vocoder.

The vocoder (pretrained universal HiFi-GAN) already turns log-mel into speech, so the codec only has
to learn log-mel <-> one latent per 80 ms frame. Per step:

    loss = |decode(z) - mel|_1 + kl_weight(step) * KL(q(z | mel) || N(0, I)),   z ~ q(z | mel)

on random crops of log-mel. The mel analysis is deterministic, so every file's log-mel is computed
once and kept (in memory and in `<out_dir>/mels/`): a step costs only the small autoencoder, and an
hour of audio trains in minutes on two cores.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.nn import functional as F

from michi_core.audio import load_audio, pad_to_frames, resample
from michi_core.model.codec import Codec, Posterior
from michi_core.model.config import preset

from ..trainer import TrainConfig, step_generator

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3"}
SILENCE = float(np.log(1e-5))  # the log-mel of silence (the analysis clamps at 1e-5)


@dataclass
class CodecStageConfig(TrainConfig):
    out_dir: str = "runs/codec"
    preset: str = "small"  # whose CodecConfig to train
    data: str = ""  # a corpus folder from `michi-train data` (or its manifest), or any folder of audio files
    valid_share: float = 0.05  # held-out share of files (by name, stable) when the data has no split
    crop_frames: int = 24  # frames per training crop (24 x 80 ms = 1.9 s)
    batch_size: int = 16
    lr: float = 1e-3
    kl_weight: float = 1e-3  # against a per-element L1 on log-mel: latents come out near unit scale
    kl_warmup_steps: int = 500  # linear ramp of the KL weight from 0
    eval_clips: int = 32
    # More speakers from the same recordings: each training file of these speakers is also played this much
    # faster or slower (pitch and formants move together, like another vocal tract). Our corpus has one
    # natural voice (piper joe); real voices are what the codec must carry.
    augment_speeds: tuple[float, ...] = (0.86, 0.93, 1.08, 1.16)
    augment_speakers: str = "piper"  # speaker-name prefix of the files to augment ("" : every file)


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


def augmentable(data: str, paths: list[Path], speaker_prefix: str) -> list[Path]:
    """The files among `paths` whose speaker's name starts with the prefix (a corpus manifest knows the
    speakers; in a plain folder of audio only the empty prefix matches, and then every file)."""
    if not speaker_prefix:
        return list(paths)
    source = Path(data)
    if not (source.is_file() or (source / "manifest.sqlite3").is_file()):
        return []
    from training.data.manifest import Manifest

    manifest = Manifest(source)
    chosen = {manifest.resolve(row["path"]) for row in manifest.rows("speaker like ?", [speaker_prefix + "%"])
              if row.get("path")}
    return [p for p in paths if p in chosen]


@torch.inference_mode()
def mel_of_file(codec: Codec, path: Path, speed: float = 1.0) -> torch.Tensor:
    """A whole file's log-mel (m, j), float16, by the codec's own (offline) analysis; `speed` plays it that
    much faster (1.1: 10 % higher and shorter)."""
    c = codec.config
    wave = load_audio(path, c.sample_rate)
    if speed != 1.0:
        wave = resample(wave, round(c.sample_rate * speed), c.sample_rate)
    return codec.mel(torch.from_numpy(pad_to_frames(wave, c.frame_size))[None])[0].half()


class MelCache:
    """Every file's log-mel, computed once and stored next to the run (one safetensors file per 256 files)."""

    def __init__(self, codec: Codec, paths: list[Path], folder: Path, name: str, speed: float = 1.0):
        self.mels: list[torch.Tensor] = []
        key = hashlib.sha256((repr((codec.config.mel_rate, codec.config.hop_length, codec.config.n_mels,
                                    [str(p) for p in paths])) + ("" if speed == 1.0 else f"x{speed}"))
                             .encode()).hexdigest()[:12]
        folder.mkdir(parents=True, exist_ok=True)
        for start in range(0, len(paths), 256):
            shard = folder / f"{name}-{key}-{start // 256:04d}.safetensors"
            chunk = paths[start:start + 256]
            if shard.is_file():
                stored = load_file(str(shard))
                self.mels.extend(stored[str(i)] for i in range(len(chunk)))
                continue
            mels = [mel_of_file(codec, p, speed) for p in chunk]
            save_file({str(i): m.contiguous() for i, m in enumerate(mels)}, str(shard))
            self.mels.extend(mels)
            log.info("%s mels: %d/%d files", name, min(start + 256, len(paths)), len(paths))
        self.lengths = np.array([m.shape[-1] for m in self.mels], dtype=np.float64)

    def extend(self, other: MelCache) -> None:
        self.mels.extend(other.mels)
        self.lengths = np.concatenate([self.lengths, other.lengths])

    def __len__(self) -> int:
        return len(self.mels)

    def crop(self, n_mel: int, g: torch.Generator) -> torch.Tensor:
        """A random crop of n_mel frames, from a file drawn in proportion to its length (silence-padded)."""
        weights = torch.from_numpy(self.lengths / self.lengths.sum())
        index = int(torch.multinomial(weights, 1, generator=g))
        mel = self.mels[index].float()
        if mel.shape[-1] <= n_mel:
            return F.pad(mel, (0, n_mel - mel.shape[-1]), value=SILENCE)
        start = int(torch.randint(0, mel.shape[-1] - n_mel + 1, (1,), generator=g))
        return mel[:, start:start + n_mel]


class CodecStage:
    name = "codec"

    def __init__(self, config: CodecStageConfig):
        self.config = config
        self.codec_config = preset(config.preset).codec
        train, valid = find_audio(config.data)
        if not valid:  # stable split by name: the same files are held out on every run
            n_valid = max(1, int(round(config.valid_share * len(train))))
            valid, train = train[:n_valid], train[n_valid:]
        self.train_paths, self.valid_paths = train, valid[: config.eval_clips]
        log.info("codec stage: %d training files, %d held out", len(train), len(valid))

    def build(self, device: torch.device) -> dict[str, torch.nn.Module]:
        self.device = device
        codec = Codec(self.codec_config)
        folder = Path(self.config.out_dir) / "mels"
        self.train_mels = MelCache(codec, self.train_paths, folder, "train")
        c = self.codec_config
        recorded = self.train_mels.lengths.sum() * c.hop_length / c.mel_rate / 3600
        augmented = augmentable(self.config.data, self.train_paths, self.config.augment_speakers)
        for speed in self.config.augment_speeds if augmented else ():
            self.train_mels.extend(MelCache(codec, augmented, folder, "train", speed))
        self.valid_mels = MelCache(codec, self.valid_paths, folder, "valid")
        hours = self.train_mels.lengths.sum() * c.hop_length / c.mel_rate / 3600
        log.info("codec stage: %.2f hours of training audio (%.2f recorded, the rest sped up or slowed down)",
                 hours, recorded)
        return {"codec": codec.to(device)}

    def optimizers(self, modules):
        self.modules = modules
        return {"codec": torch.optim.AdamW(modules["codec"].parameters(), self.config.lr, betas=(0.9, 0.99),
                                           weight_decay=0.0)}

    def batch(self, step: int, micro: int, rank: int, world: int) -> torch.Tensor:
        cfg = self.config
        per_rank = max(1, cfg.batch_size // (world * cfg.grad_accum))
        g = step_generator(cfg.seed, step, micro, rank)
        n_mel = cfg.crop_frames * self.codec_config.mel_frames_per_frame
        return torch.stack([self.train_mels.crop(n_mel, g) for _ in range(per_rank)])  # (b, m, j)

    def kl_weight(self, step: int) -> float:
        return self.config.kl_weight * min(1.0, step / max(1, self.config.kl_warmup_steps))

    def train_step(self, batch: torch.Tensor, step: int, ctx) -> dict[str, float]:
        mel = batch.to(self.device)
        codec = self.modules["codec"]
        g = step_generator(self.config.seed + 1, step, ctx.micro)
        with ctx.autocast():
            reconstructed, posterior = codec(mel, generator=g if mel.device.type == "cpu" else None)
        reconstruction = F.l1_loss(reconstructed.float(), mel)
        kl = posterior.kl()
        loss = reconstruction + self.kl_weight(step) * kl
        ctx.backward(loss, ["codec"])
        ctx.step("codec")
        return {"loss": loss.item(), "mel": reconstruction.item(), "kl": kl.item(),
                "latent_std": float(posterior.mean.detach().std())}

    @torch.no_grad()
    def evaluate(self, step: int) -> dict[str, float]:
        """Held-out files, whole: log-mel distance of the reconstruction from the posterior means, and the
        latents' statistics (what the flow head will have to predict)."""
        codec = self.modules["codec"]
        codec = codec.module if hasattr(codec, "module") else codec
        distances, posteriors = [], []
        for mel in self.valid_mels.mels:
            mel = mel.float()[None].to(self.device)
            posterior = codec.encode_mel(mel)
            distances.append(float(F.l1_loss(codec.decode_mel(posterior.mean), mel)))
            posteriors.append(Posterior(posterior.mean[0], posterior.logvar[0]))
        if not distances:
            return {}
        stats = latent_statistics(posteriors)
        return {"mel_distance": float(np.mean(distances)), **{f"latent_{k}": v for k, v in stats.items()}}

    def export(self, directory: Path) -> None:
        codec = self.modules["codec"]
        codec = codec.module if hasattr(codec, "module") else codec
        codec.save_pretrained(directory)
        log.info("exported the codec to %s", directory)


def latent_statistics(posteriors: list[Posterior]) -> dict[str, float]:
    """Over every frame of every clip (each posterior (n, d)): the means' mean and standard deviation, the
    mean posterior standard deviation, KL(q || N(0, I)) per frame and dimension, and the smoothness of the
    means (standard deviation of their frame-to-frame change, relative to their own)."""
    mean = torch.cat([p.mean for p in posteriors])
    logvar = torch.cat([p.logvar for p in posteriors])
    steps = torch.cat([p.mean.diff(dim=0) for p in posteriors if len(p.mean) > 1])
    return {"mean": float(mean.mean()), "std": float(mean.std()),
            "posterior_std": float(torch.exp(0.5 * logvar).mean()), "kl": float(Posterior(mean, logvar).kl()),
            "step_std": float(steps.std() / mean.std().clamp_min(1e-8))}


def add_codec_command(subparsers) -> None:
    from ..trainer import add_config_arguments

    p = subparsers.add_parser("codec", help="train the codec's mel autoencoder (the vocoder is pretrained)")
    add_config_arguments(p, CodecStageConfig)
    p.set_defaults(func=run_codec_command)


def run_codec_command(args) -> int:
    from ..trainer import Trainer, config_from_arguments

    config = config_from_arguments(CodecStageConfig, args)
    Trainer(CodecStage(config)).fit(resume=args.resume)
    return 0
