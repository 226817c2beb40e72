"""HiFi-GAN discriminators: multi-period (MPD) and multi-scale (MSD).

Each returns, per sub-discriminator, a score map and the list of hidden activations (for the
feature-matching loss). `channels` scales every width, so tests can use tiny ones.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm

LRELU_SLOPE = 0.1


class PeriodDiscriminator(nn.Module):
    """Folds the waveform into (t / p, p) and convolves along time: sees periodic structure."""

    def __init__(self, period: int, channels: int):
        super().__init__()
        self.period = period
        widths = [1, channels, 4 * channels, 16 * channels, 32 * channels, 32 * channels]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(widths[i], widths[i + 1], (5, 1), (3 if i < 4 else 1, 1), padding=(2, 0)))
            for i in range(5)
        )
        self.post = weight_norm(nn.Conv2d(widths[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, wave: torch.Tensor):  # (b, t)
        b, t = wave.shape
        if t % self.period:
            wave = F.pad(wave, (0, self.period - t % self.period), mode="reflect")
        x = wave.reshape(b, 1, -1, self.period)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            features.append(x)
        x = self.post(x)
        features.append(x)
        return x.flatten(1), features


class ScaleDiscriminator(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        c = channels
        spec = [(1, c, 15, 1, 1), (c, 2 * c, 41, 4, 4), (2 * c, 4 * c, 41, 4, 16), (4 * c, 8 * c, 41, 4, 16),
                (8 * c, 8 * c, 41, 4, 16), (8 * c, 8 * c, 5, 1, 1)]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv1d(i, o, k, s, groups=min(g, i), padding=k // 2)) for i, o, k, s, g in spec
        )
        self.post = weight_norm(nn.Conv1d(8 * c, 1, 3, padding=1))

    def forward(self, wave: torch.Tensor):  # (b, t)
        x = wave[:, None]
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            features.append(x)
        x = self.post(x)
        features.append(x)
        return x.flatten(1), features


class Discriminators(nn.Module):
    """MPD (periods 2, 3, 5, 7, 11) + MSD (raw, /2, /4)."""

    def __init__(self, channels: int = 32, periods: tuple[int, ...] = (2, 3, 5, 7, 11)):
        super().__init__()
        self.period = nn.ModuleList(PeriodDiscriminator(p, channels) for p in periods)
        self.scale = nn.ModuleList(ScaleDiscriminator(max(channels // 2, 4)) for _ in range(3))
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def forward(self, wave: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        scores, features = [], []
        for d in self.period:
            s, f = d(wave)
            scores.append(s)
            features.append(f)
        x = wave
        for i, d in enumerate(self.scale):
            if i:
                x = self.pool(x[:, None])[:, 0]
            s, f = d(x)
            scores.append(s)
            features.append(f)
        return scores, features
