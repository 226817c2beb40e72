"""The audio codec: waveform <-> one continuous latent per 80 ms frame.

Shape legend: b - batch, t - samples, n - frames, d - latent dim (config.latent_dim).

- Encoder: strided causal convs (wave -> frames) producing the mean and log-variance of a
  diagonal Gaussian per frame. The KL term keeps the latents near N(0, I), which is what makes
  them easy targets for the rectified-flow speak head.
- Decoder: a causal HiFi-GAN generator (transposed-conv upsampling by frame_size in all,
  multi-receptive-field residual blocks). Every conv is causal and carries streaming state, so
  decoding frame by frame equals decoding the whole clip.

Adversarial discriminators and losses live with the trainer (training/), not here: inference
never needs them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from michi_core.model.config import FORMAT_VERSION, CheckpointError, CodecConfig, _dataclass_from_dict
from michi_core.model.streaming import (CausalConv1d, CausalConvTranspose1d, ConvEncoder, StreamingModule, init_signal_path,
                        zero_init_residual)

LRELU_SLOPE = 0.1  # HiFi-GAN's leaky-ReLU slope


@dataclass
class Posterior:
    mean: torch.Tensor  # (b, n, d)
    logvar: torch.Tensor  # (b, n, d)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device,
                            dtype=self.mean.dtype)
        return self.mean + torch.exp(0.5 * self.logvar) * noise

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) per frame, averaged over batch, frames and dims."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar).mean()


class MRFBlock(nn.Module):
    """HiFi-GAN ResBlock1: pairs of (dilated conv, conv) with residual connections."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]):
        super().__init__()
        self.dilated = nn.ModuleList(CausalConv1d(channels, channels, kernel_size, dilation=d) for d in dilations)
        self.plain = nn.ModuleList(CausalConv1d(channels, channels, kernel_size) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv1, conv2 in zip(self.dilated, self.plain):
            y = conv1(F.leaky_relu(x, LRELU_SLOPE))
            x = x + conv2(F.leaky_relu(y, LRELU_SLOPE))
        return x


class HiFiGANDecoder(nn.Module):
    """latents (b, d, n) -> waveform (b, n * frame_size), all causal."""

    def __init__(self, config: CodecConfig):
        super().__init__()
        c = config.decoder_channels
        self.pre = CausalConv1d(config.latent_dim, c, kernel_size=3)
        self.ups = nn.ModuleList()
        self.mrfs = nn.ModuleList()
        for rate in config.decoder_upsample_rates:
            c_next = max(c // 2, 1)
            self.ups.append(CausalConvTranspose1d(c, c_next, kernel_size=2 * rate, stride=rate))
            self.mrfs.append(nn.ModuleList(
                MRFBlock(c_next, k, d) for k, d in zip(config.resblock_kernel_sizes, config.resblock_dilations)
            ))
            c = c_next
        self.post = CausalConv1d(c, 1, kernel_size=7)
        init_signal_path(self, LRELU_SLOPE)
        for mrfs in self.mrfs:
            for block in mrfs:
                for conv in block.plain:
                    zero_init_residual(conv)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.pre(z)
        for up, mrfs in zip(self.ups, self.mrfs):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            x = sum(block(x) for block in mrfs) / len(mrfs)
        x = self.post(F.leaky_relu(x))
        return torch.tanh(x)[:, 0]


class Codec(StreamingModule):
    def __init__(self, config: CodecConfig):
        super().__init__()
        self.config = config
        self.encoder = ConvEncoder(config.encoder_channels, config.encoder_max_channels,
                                   config.encoder_strides, out_channels=2 * config.latent_dim)
        self.decoder = HiFiGANDecoder(config)

    def encode(self, wave: torch.Tensor) -> Posterior:
        """wave (b, t) at config.sample_rate, t a multiple of frame_size -> posterior over (b, n, d)."""
        stats = self.encoder(wave).transpose(1, 2)  # (b, n, 2d)
        mean, logvar = stats.chunk(2, dim=-1)
        return Posterior(mean, logvar.clamp(-30.0, 20.0))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents (b, n, d) -> wave (b, n * frame_size)."""
        return self.decoder(latents.transpose(1, 2))

    def forward(self, wave: torch.Tensor, generator: torch.Generator | None = None):
        """Autoencode for training: returns (reconstruction, posterior)."""
        posterior = self.encode(wave)
        return self.decode(posterior.sample(generator)), posterior

    # -- codec-only checkpoints (the codec stage trains and ships the codec on its own) ------------------
    def save_pretrained(self, directory: str | Path, dtype: torch.dtype | None = None) -> None:
        """config.json + model.safetensors; `dtype` (e.g. float16 for a shipped codec) stores the
        floating-point weights at that precision (loading puts them back into the module's dtype)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"format_version": FORMAT_VERSION, "codec": dataclasses.asdict(self.config)}
        (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().contiguous()
                 for k, v in self.state_dict().items()}
        save_file(state, str(directory / "model.safetensors"), metadata={"kind": "michi-codec"})

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> Codec:
        """A codec checkpoint, or the codec inside a full Michi checkpoint."""
        directory = Path(directory)
        try:
            data = json.loads((directory / "config.json").read_text())
            if data.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"format version {data.get('format_version')!r}, expected {FORMAT_VERSION}")
            config = _dataclass_from_dict(CodecConfig, data["codec"])
            state = load_file(str(directory / "model.safetensors"))
        except (OSError, KeyError, ValueError, TypeError) as error:
            raise CheckpointError(f"{directory} is not a usable codec checkpoint: {error}") from error
        if not any(k.startswith("encoder.") for k in state):  # a full model checkpoint
            state = {k[len("codec."):]: v for k, v in state.items() if k.startswith("codec.")}
        codec = cls(config)
        try:
            codec.load_state_dict(state)
        except RuntimeError as error:
            raise CheckpointError(f"{directory}: the weights do not fit the codec config ({error})") from error
        return codec.eval()
