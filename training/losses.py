"""Codec losses as plain functions (HiFi-GAN style): each returns a scalar.

Shape legend: b - batch, t - samples, f - frequency bins, m - mel bins, n - STFT frames.
"""

from __future__ import annotations

import functools
import math

import torch
from torch.nn import functional as F

STFT_RESOLUTIONS = ((512, 128, 512), (1024, 256, 1024), (2048, 512, 2048))  # (n_fft, hop, window)


@functools.lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, device: str = "cpu") -> torch.Tensor:
    """Slaney-style triangular mel filters (HTK mel scale): (m, n_fft // 2 + 1).

    Built outside inference mode whatever the caller's mode: the cached tensor is shared, and one
    made under `torch.inference_mode()` (an evaluation) could never be used in training afterwards."""
    with torch.inference_mode(False):
        return _mel_filterbank(sample_rate, n_fft, n_mels, device)


def _mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, device: str) -> torch.Tensor:
    def hz_to_mel(hz):
        return 2595.0 * math.log10(1.0 + hz / 700.0)

    mels = torch.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_mels + 2)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    bins = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    lower, center, upper = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    up = (bins[None] - lower) / (center - lower)
    down = (upper - bins[None]) / (upper - center)
    filters = torch.clamp(torch.minimum(up, down), min=0.0)
    filters *= (2.0 / (upper - lower))  # equal area per filter
    return filters.to(device)


def stft_magnitude(wave: torch.Tensor, n_fft: int, hop: int, window: int) -> torch.Tensor:
    """(b, t) -> (b, f, n)."""
    spec = torch.stft(wave.float(), n_fft, hop, window, torch.hann_window(window, device=wave.device),
                      return_complex=True)
    return spec.abs().clamp_min(1e-7)


def log_mel(wave: torch.Tensor, sample_rate: int, n_fft: int = 1024, hop: int = 256, n_mels: int = 80) -> torch.Tensor:
    """(b, t) -> log mel spectrogram (b, m, n)."""
    mag = stft_magnitude(wave, n_fft, hop, n_fft)
    return torch.log(torch.clamp(mel_filterbank(sample_rate, n_fft, n_mels, str(wave.device)) @ mag, min=1e-5))


def mel_loss(fake: torch.Tensor, real: torch.Tensor, sample_rate: int) -> torch.Tensor:
    return F.l1_loss(log_mel(fake, sample_rate), log_mel(real, sample_rate))


def multi_resolution_stft_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Spectral convergence + log-magnitude L1, averaged over three resolutions."""
    total = fake.new_zeros(())
    for n_fft, hop, window in STFT_RESOLUTIONS:
        f, r = stft_magnitude(fake, n_fft, hop, window), stft_magnitude(real, n_fft, hop, window)
        convergence = torch.linalg.norm(r - f) / torch.linalg.norm(r)
        total = total + convergence + F.l1_loss(f.log(), r.log())
    return total / len(STFT_RESOLUTIONS)


def discriminator_loss(real_scores: list[torch.Tensor], fake_scores: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN: real -> 1, fake -> 0, summed over sub-discriminators."""
    return sum(torch.mean((1 - r) ** 2) + torch.mean(f ** 2) for r, f in zip(real_scores, fake_scores))


def generator_adversarial_loss(fake_scores: list[torch.Tensor]) -> torch.Tensor:
    return sum(torch.mean((1 - f) ** 2) for f in fake_scores)


def feature_matching_loss(real_features: list[list[torch.Tensor]], fake_features: list[list[torch.Tensor]]) -> torch.Tensor:
    """L1 between the discriminators' hidden activations on real and generated audio."""
    total = 0.0
    for real_layers, fake_layers in zip(real_features, fake_features):
        for r, f in zip(real_layers, fake_layers):
            total = total + F.l1_loss(f, r.detach())
    return total
