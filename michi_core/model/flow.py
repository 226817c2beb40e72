"""Rectified-flow speak head: the next audio latent from the backbone state, in one pass.

Shape legend: b - batch, d - latent dim, c - conditioning width (backbone width), w - MLP width.

Rectified flow (Liu et al. 2022) with x0 ~ N(0, I) noise and x1 the target latent:
    x_t = (1 - t) * x0 + t * x1,     v = x1 - x0,     loss = || v_theta(x_t, t, cond) - v ||^2
Sampling integrates dx/dt = v_theta from t = 0 to 1 with N Euler steps; with N = 1 the sample is
x0 + v_theta(x0, 0, cond), one network pass per frame.

The network is an MLP of residual blocks with adaptive LayerNorm (AdaLN-Zero, as in DiT):
the condition (backbone state h_t + embedding of the chosen text token) and the flow time set
each block's shift, scale and gate.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from michi_core.model.config import FlowConfig

ZERO_TIME_SHARE = 0.25  # share of training samples at t = 0, the point 1-step sampling uses


def timestep_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of t in [0, 1]: (b,) -> (b, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], dim=-1).to(t.dtype)


class AdaLNBlock(nn.Module):
    def __init__(self, width: int, mlp_ratio: float):
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.SiLU(), nn.Linear(hidden, width))
        self.modulation = nn.Linear(width, 3 * width)
        nn.init.zeros_(self.modulation.weight)  # AdaLN-Zero: every block starts as the identity
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:  # (b, w), (b, w)
        shift, scale, gate = self.modulation(cond).chunk(3, dim=-1)
        return x + gate * self.mlp(self.norm(x) * (1 + scale) + shift)


class FlowHead(nn.Module):
    def __init__(self, config: FlowConfig, latent_dim: int, cond_dim: int):
        super().__init__()
        self.config = config
        self.latent_dim = latent_dim
        w = config.width
        self.in_proj = nn.Linear(latent_dim, w)
        self.cond_proj = nn.Linear(cond_dim, w)
        self.time_mlp = nn.Sequential(nn.Linear(config.time_embed_dim, w), nn.SiLU(), nn.Linear(w, w))
        self.blocks = nn.ModuleList(AdaLNBlock(w, config.mlp_ratio) for _ in range(config.num_blocks))
        self.out_norm = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        self.out_modulation = nn.Linear(w, 2 * w)
        self.out_proj = nn.Linear(w, latent_dim)
        nn.init.zeros_(self.out_modulation.weight)
        nn.init.zeros_(self.out_modulation.bias)

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """v_theta(x_t, t, cond): (b, d), (b,), (b, c) -> (b, d)."""
        c = F.silu(self.cond_proj(cond) + self.time_mlp(timestep_features(t, self.config.time_embed_dim)))
        x = self.in_proj(x_t)
        for block in self.blocks:
            x = block(x, c)
        shift, scale = self.out_modulation(c).chunk(2, dim=-1)
        return self.out_proj(self.out_norm(x) * (1 + scale) + shift)

    def loss(self, x1: torch.Tensor, cond: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Rectified-flow loss for targets x1 (b, d) under conditions cond (b, c)."""
        b = x1.shape[0]
        x0 = torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)
        # Uniform t, with a share pinned at t = 0: one-step sampling only ever queries t = 0.
        t = torch.rand(b, generator=generator, device=x1.device, dtype=x1.dtype)
        t = torch.where(torch.rand(b, generator=generator, device=x1.device) < ZERO_TIME_SHARE, 0.0, t)
        x_t = (1 - t[:, None]) * x0 + t[:, None] * x1
        return F.mse_loss(self.velocity(x_t, t, cond), x1 - x0)

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, steps: int | None = None, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Integrate from noise to a latent with `steps` Euler steps: (b, c) -> (b, d)."""
        steps = steps or self.config.sample_steps
        assert steps >= 1, "the flow needs at least one Euler step"
        x = temperature * torch.randn(cond.shape[0], self.latent_dim, generator=generator,
                                      device=cond.device, dtype=cond.dtype)
        for i in range(steps):
            t = torch.full((cond.shape[0],), i / steps, device=cond.device, dtype=cond.dtype)
            x = x + self.velocity(x, t, cond) / steps
        return x
