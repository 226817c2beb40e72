"""Listen head: the user's audio -> one embedding per frame for the backbone, plus user text.

Shape legend: b - batch, t - samples, n - frames, w - listen width, h - backbone width.

A strided causal conv front end (the same design as the codec encoder) turns each 80 ms frame of
the user's audio into a feature vector; causal dilated conv blocks at frame rate then give every
frame ~2.5 s of left context without ever looking ahead. The output is projected to the
backbone's width and summed into the frame position. The user's words come out of the same
embedding: a frame-aligned token per frame (PAD where no word starts), scored against the
backbone's own (tied) text embeddings, so the user transcript is produced by the model itself.
"""

from __future__ import annotations

import torch
from torch import nn

from michi_core.model.config import CodecConfig, ListenConfig
from michi_core.model.streaming import CausalConv1d, ConvEncoder, StreamingModule


class TemporalBlock(nn.Module):
    """Pre-norm residual causal conv block at frame rate."""

    def __init__(self, width: int, kernel_size: int, dilation: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)  # per frame, over channels: no look-ahead
        self.conv = CausalConv1d(width, 2 * width, kernel_size, dilation=dilation)
        self.out = nn.Conv1d(width, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, w, n)
        y = self.norm(x.transpose(1, 2)).transpose(1, 2)
        a, g = self.conv(y).chunk(2, dim=1)
        return x + self.out(a * torch.sigmoid(g))  # gated linear unit


class ListenHead(StreamingModule):
    def __init__(self, config: ListenConfig, codec: CodecConfig, backbone_width: int):
        super().__init__()
        self.frame_size = codec.frame_size
        self.frontend = ConvEncoder(config.encoder_channels, config.encoder_max_channels,
                                    config.encoder_strides, out_channels=config.width)
        assert self.frontend.hop == codec.frame_size, "listen strides must multiply to the codec frame size"
        self.blocks = nn.Sequential(*(
            TemporalBlock(config.width, config.kernel_size, config.dilation_cycle[i % len(config.dilation_cycle)])
            for i in range(config.num_layers)
        ))
        self.norm = nn.LayerNorm(config.width)
        self.to_backbone = nn.Linear(config.width, backbone_width)
        self.to_text = nn.Linear(backbone_width, backbone_width)  # scored against the tied text embeddings

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """wave (b, t), t a multiple of frame_size -> user embeddings (b, n, h)."""
        x = self.blocks(self.frontend(wave))  # (b, w, n)
        return self.to_backbone(self.norm(x.transpose(1, 2)))

    def text_logits(self, user_embeds: torch.Tensor, text_embedding: torch.Tensor) -> torch.Tensor:
        """(b, n, h) x (vocab, h) -> (b, n, vocab): which token the user started in each frame."""
        query = self.to_text(user_embeds).to(text_embedding.dtype)  # cast the vector, not the table
        return (query @ text_embedding.t()).float()
