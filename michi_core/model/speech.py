"""The speech stack: how the words the backbone chose are said, frame by frame.

Shape legend: b - batch, n - frames, w - stack width, d - latent dim, h - backbone width,
s - window slots (config.window_offsets), p - phoneme symbols of an utterance.

The backbone's inner monologue decides *what* is said (text tokens); this small causal transformer
decides *how* and *when*. Each 80 ms frame t it sees
- its previous latent a_{t-1} (what it just said),
- the phonemes around a pointer p_t into the utterance's phoneme sequence (michi_core.model.phonemes):
  the symbols at p_t + offset for every offset in `window_offsets`, where a symbol of a word not yet
  in the text stream shows as UNSEEN,
- how long the pointer has stayed where it is, how many visible symbols lie ahead of it,
- the backbone's state at the latest text token (what the model is saying, in context),
and outputs o_t, from which three heads read:
- timing:  does the next word enter the text stream now (the PAD-or-word decision the frozen LM head
  cannot make: it never saw PAD)?
- advance: how many symbols the pointer moves by the next frame (0 .. max_advance - 1);
- flow:    the condition of the one-step rectified-flow head that samples a_t.

Text leads audio by `text_lead` frames (Moshi's delay): a word enters the text stream k frames
before the pointer reaches its first sound, so its phonemes are visible before it is voiced.

Latents are modelled normalised by the training corpus's per-dimension mean and std (buffers
saved with the weights); `denormalize` gives codec latents.

Training (`forward`) and streaming (`step`) share `frame_inputs` and the same layers: the parity
test checks that stepping frame by frame equals the whole-sequence forward.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from michi_core.model.config import SpeechConfig
from michi_core.model.flow import FlowHead
from michi_core.model.phonemes import PhonemeTable, phonemize, word_groups, words_to_groups


@dataclass
class FrameFeatures:
    """Per-frame inputs besides the previous latent (training: whole sequences; streaming: n = 1)."""

    window: torch.Tensor  # (b, n, s) long: symbol ids around the pointer (0 pad, unseen_id unseen)
    stay: torch.Tensor  # (b, n) long: frames the pointer has been at this symbol (clamped)
    ahead: torch.Tensor  # (b, n) long: visible symbols after the pointer (clamped)
    backbone: torch.Tensor  # (b, n, h) backbone state at the latest text token (zeros before any)


@dataclass
class SpeechTargets:
    latents: torch.Tensor  # (b, n, d) normalised a_t
    emit: torch.Tensor  # (b, n) float: 1 where the next word enters the text stream at frame t
    advance: torch.Tensor  # (b, n) long: p_{t+1} - p_t, clamped
    mask: torch.Tensor  # (b, n) bool: real frames


@dataclass
class SpeechLosses:
    total: torch.Tensor
    flow: torch.Tensor
    timing: torch.Tensor
    advance: torch.Tensor

    def as_dict(self) -> dict[str, float]:
        return {k: float(v.detach()) for k, v in self.__dict__.items()}


def window_ids(symbol_ids: torch.Tensor, pointer: torch.Tensor, visible: torch.Tensor,
               offsets: tuple[int, ...], unseen_id: int) -> torch.Tensor:
    """Symbol ids around each pointer: (b, p), (b, n), (b, n) -> (b, n, s).

    symbol_ids holds table ids (>= 1) and 0 beyond an utterance's end; `visible` counts the symbols
    already in the text stream; positions before 0 or past the sequence are 0, past `visible` UNSEEN.
    """
    offsets_t = torch.tensor(offsets, device=pointer.device)
    index = pointer[..., None] + offsets_t  # (b, n, s)
    length = symbol_ids.shape[1]
    gathered = torch.gather(symbol_ids[:, None, :].expand(-1, index.shape[1], -1), 2,
                            index.clamp(0, length - 1))
    gathered = torch.where((index < 0) | (index >= length), 0, gathered)
    return torch.where((index >= visible[..., None]) & (gathered > 0), unseen_id, gathered)


class RotaryEmbedding(nn.Module):
    def __init__(self, dim: int, base: float = 10_000.0):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / base ** (torch.arange(0, dim, 2).float() / dim), persistent=False)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x (b, heads, n, dh) rotated by positions (n,)."""
        angles = positions.float()[:, None] * self.inv_freq[None]  # (n, dh/2)
        cos, sin = angles.cos()[None, None], angles.sin()[None, None]
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


class Block(nn.Module):
    """Pre-norm causal self-attention (windowed, RoPE) + MLP."""

    def __init__(self, config: SpeechConfig):
        super().__init__()
        w = config.width
        self.heads = config.num_heads
        self.norm1 = nn.LayerNorm(w)
        self.qkv = nn.Linear(w, 3 * w)
        self.proj = nn.Linear(w, w)
        self.norm2 = nn.LayerNorm(w)
        hidden = int(w * config.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(w, hidden), nn.GELU(), nn.Linear(hidden, w))
        self.rope = RotaryEmbedding(w // config.num_heads)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None,
                cache: tuple[torch.Tensor, torch.Tensor] | None = None):
        """x (b, n, w); positions (n,); mask (n, m) bool (True = attend) or None for the cache case.
        Returns (b, n, w) and this layer's keys/values (b, heads, m, dh) incl. the cache."""
        b, n, w = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        q, k = self.rope(q, positions), self.rope(k, positions)
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (b, heads, n, dh)
        x = x + self.proj(attended.transpose(1, 2).reshape(b, n, w))
        return x + self.mlp(self.norm2(x)), (k, v)


@dataclass
class SpeechState:
    """One stream's state: the attention cache, the pointer and what is visible."""

    cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # per layer (1, heads, m, dh)
    frame: int = 0  # frames stepped
    pointer: int = 0  # p_t: index into the phoneme sequence
    stay: int = 0  # frames at this symbol
    carry: float = 0.0  # the fraction of a symbol the pointer owes (expected advances accumulate)
    prev_latent: torch.Tensor | None = None  # (1, d) normalised a_{t-1}


class SpeechStack(nn.Module):
    def __init__(self, config: SpeechConfig, latent_dim: int, backbone_dim: int):
        super().__init__()
        self.config = config
        w, e = config.width, config.phoneme_dim
        self.latent_dim = latent_dim
        self.symbol_embedding = nn.Embedding(len(config.symbols) + 1, e)  # + UNSEEN
        self.slot_embedding = nn.Parameter(torch.zeros(len(config.window_offsets), e))
        self.window_proj = nn.Linear(len(config.window_offsets) * e, w)
        self.latent_in = nn.Linear(latent_dim, w)
        self.backbone_in = nn.Linear(backbone_dim, w)
        self.stay_embedding = nn.Embedding(config.max_stay + 1, w)
        self.ahead_embedding = nn.Embedding(config.max_ahead + 1, w)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.out_norm = nn.LayerNorm(w)
        self.timing_head = nn.Linear(w, 1)
        self.advance_head = nn.Linear(w, config.max_advance)
        self.flow = FlowHead(config.flow, latent_dim, cond_dim=w)
        self.register_buffer("latent_mean", torch.zeros(latent_dim))
        self.register_buffer("latent_std", torch.ones(latent_dim))
        self.register_buffer("silence", torch.zeros(latent_dim))  # codec latent of silence: what an idle voice says

    # -- latents ------------------------------------------------------------------------------------
    def normalize(self, latents: torch.Tensor) -> torch.Tensor:
        return (latents - self.latent_mean) / self.latent_std

    def denormalize(self, latents: torch.Tensor) -> torch.Tensor:
        return latents * self.latent_std + self.latent_mean

    # -- the frame stack -----------------------------------------------------------------------------
    def frame_inputs(self, prev_latents: torch.Tensor, features: FrameFeatures) -> torch.Tensor:
        """(b, n, d) normalised a_{t-1} + features -> (b, n, w)."""
        b, n, s = features.window.shape
        slots = self.symbol_embedding(features.window) + self.slot_embedding  # (b, n, s, e)
        c = self.config
        return (self.window_proj(slots.reshape(b, n, -1)) + self.latent_in(prev_latents)
                + self.backbone_in(features.backbone.to(self.latent_in.weight.dtype))
                + self.stay_embedding(features.stay.clamp(0, c.max_stay))
                + self.ahead_embedding(features.ahead.clamp(0, c.max_ahead)))

    def forward(self, prev_latents: torch.Tensor, features: FrameFeatures) -> torch.Tensor:
        """Whole sequences: (b, n, d), features -> o (b, n, w)."""
        x = self.frame_inputs(prev_latents, features)
        n = x.shape[1]
        positions = torch.arange(n, device=x.device)
        distance = positions[:, None] - positions[None, :]
        mask = (distance >= 0) & (distance < self.config.attention_window)  # causal, windowed
        for block in self.blocks:
            x, _ = block(x, positions, mask)
        return self.out_norm(x)

    def loss(self, prev_latents: torch.Tensor, features: FrameFeatures, targets: SpeechTargets,
             generator: torch.Generator | None = None) -> SpeechLosses:
        out = self(prev_latents, features)  # (b, n, w)
        m = targets.mask
        flow = self.flow.loss(targets.latents[m], out[m], generator=generator)
        timing = F.binary_cross_entropy_with_logits(self.timing_head(out[m])[:, 0], targets.emit[m])
        advance = F.cross_entropy(self.advance_head(out[m]), targets.advance[m].clamp(0, self.config.max_advance - 1))
        return SpeechLosses(flow + timing + advance, flow, timing, advance)

    # -- streaming ------------------------------------------------------------------------------------
    def new_state(self, device: torch.device | str = "cpu") -> SpeechState:
        return SpeechState(prev_latent=torch.zeros(1, self.latent_dim, device=device))

    def step(self, state: SpeechState, features: FrameFeatures) -> torch.Tensor:
        """One frame: features with n = 1 -> o_t (1, w); the attention cache moves on."""
        x = self.frame_inputs(state.prev_latent[:, None], features)  # (1, 1, w)
        positions = torch.tensor([state.frame], device=x.device)
        keep = self.config.attention_window - 1  # cached frames the new one may attend to
        new_cache = []
        for i, block in enumerate(self.blocks):
            cache = None if state.cache is None else state.cache[i]
            x, (k, v) = block(x, positions, None, cache)
            new_cache.append((k[:, :, -keep:], v[:, :, -keep:]) if keep > 0 else (k[:, :, :0], v[:, :, :0]))
        state.cache = new_cache
        state.frame += 1
        return self.out_norm(x)[:, 0]

    def emit_logit(self, out: torch.Tensor) -> torch.Tensor:
        return self.timing_head(out)[..., 0]

    def expected_advance(self, out: torch.Tensor) -> float:
        """The mean of the advance head's distribution: (1, w) -> symbols per frame."""
        probs = self.advance_head(out).softmax(-1).flatten()
        return float(probs @ torch.arange(len(probs), dtype=probs.dtype, device=probs.device))


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- what to say: words -> phonemes -> groups -> tokens ---------------------------------------------------
SPEECH_PREFIX = "<|im_start|>assistant\n"  # the backbone's context before speech when it has none


@dataclass
class Utterance:
    """A text to say, as the speech stack needs it."""

    symbol_ids: list[int]  # the phoneme sequence (ids in the config's table)
    groups: list[tuple[int, int]]  # [start, end) symbol range of each phoneme word group
    group_tokens: list[list[int]]  # backbone tokens of the written words said in each group


def plan_utterance(text: str, tokenizer, table: PhonemeTable, symbols: list[str] | None = None) -> Utterance:
    """Text -> phonemes (espeak via piper), one group per spoken word (espeak joins some: "for the"),
    and each group's words as backbone tokens (a word's tokens as the text stream writes them).
    `symbols`: phonemize(text) when the caller has it already (the voice corpus stores it)."""
    words = text.split()
    if not words:
        return Utterance([], [], [])
    symbols = phonemize(text) if symbols is None else symbols
    owner = words_to_groups(words, symbols)
    if owner is None:  # cannot match: each word said on its own, one group each
        symbols = ["^"]
        for k, word in enumerate(words):
            sounds = phonemize(word)[1:-1] or ["ə"]
            symbols += sounds if k == len(words) - 1 else [*sounds, " "]
        symbols.append("$")
        owner = list(range(len(words)))
    groups = word_groups(symbols)
    group_tokens: list[list[int]] = [[] for _ in groups]
    for k, (word, g) in enumerate(zip(words, owner)):
        group_tokens[g] += tokenizer.encode(word if k == 0 else " " + word)
    return Utterance(table.ids(symbols), groups, group_tokens)


class TextStream:
    """Which phonemes are visible and which text token each frame writes, as words are emitted.

    Training replays the corpus's emission frames through it; `say()` drives it with the timing
    head. One frame: `features_for` (inputs of frame t), then `emit()` if a word enters now, then
    `next_token()` (the text token y_t: the next queued token, or None for PAD).
    """

    def __init__(self, utterance: Utterance):
        self.utterance = utterance
        self.next_group = 0
        self.visible = 1 if utterance.symbol_ids else 0  # the leading `^` is always visible
        self.queue: deque[int] = deque()
        self.tokens_written = 0

    @property
    def done(self) -> bool:
        return self.next_group >= len(self.utterance.groups)

    def emit(self) -> list[int]:
        """The next word group enters the text stream: its phonemes become visible."""
        assert not self.done, "every word has been emitted"
        start, end = self.utterance.groups[self.next_group]
        tokens = self.utterance.group_tokens[self.next_group]
        self.next_group += 1
        self.visible = len(self.utterance.symbol_ids) if self.done else end
        self.queue.extend(tokens)
        return tokens

    def next_token(self) -> int | None:
        if not self.queue:
            return None
        self.tokens_written += 1
        return self.queue.popleft()


@dataclass
class SpeechStep:
    latent: torch.Tensor  # (1, d) codec latent a_t (denormalised)
    token: int | None  # the text token written this frame (None: PAD)
    emitted: bool  # a word entered the text stream this frame
    pointer: int


class SpeechStream:
    """The speech stack speaking one utterance frame by frame: the state `say()` keeps.

    Each `step` reads the stack's output o_t, lets the timing head decide whether the next word
    enters the text stream (or `max_wait` PAD frames force it), writes the frame's text token, samples
    a_t with the flow head and moves the phoneme pointer. `backbone` is the backbone's state at the
    latest text token written before this frame (None before the first), exactly as training reads it.
    """

    def __init__(self, stack: SpeechStack, utterance: Utterance, device: torch.device | str = "cpu"):
        self.stack = stack
        self.text = TextStream(utterance)
        self.state = stack.new_state(device)
        self.device = torch.device(device)
        self.symbol_ids = torch.tensor([utterance.symbol_ids or [0]], device=self.device)
        self.waited = 0  # PAD frames since the last word entered

    @property
    def finished(self) -> bool:
        """Every word emitted and written, and the pointer on the last symbol (silence from here)."""
        return (self.text.done and not self.text.queue
                and self.state.pointer >= len(self.text.utterance.symbol_ids) - 1)

    def features(self, backbone: torch.Tensor | None, backbone_dim: int) -> FrameFeatures:
        s, c = self.state, self.stack.config
        pointer = torch.tensor([[s.pointer]], device=self.device)
        visible = torch.tensor([[self.text.visible]], device=self.device)
        window = window_ids(self.symbol_ids, pointer, visible, c.window_offsets, c.unseen_id)
        if backbone is None:
            backbone = torch.zeros(backbone_dim, device=self.device)
        return FrameFeatures(window=window, stay=torch.tensor([[s.stay]], device=self.device),
                             ahead=visible - 1 - pointer, backbone=backbone.reshape(1, 1, -1).float())

    @torch.no_grad()
    def step(self, backbone: torch.Tensor | None, emit_bias: float = 0.0, max_wait: int = 12,
             flow_steps: int = 1, temperature: float = 1.0, generator: torch.Generator | None = None,
             force_emit: bool | None = None, force_advance: int | None = None) -> SpeechStep:
        """`force_emit` / `force_advance` replace the heads' decisions (teacher forcing: the parity
        test replays a corpus utterance's timings)."""
        stack, s = self.stack, self.state
        out = stack.step(s, self.features(backbone, stack.backbone_in.in_features))  # (1, w)
        emitted = False
        if not self.text.done:
            wants = (float(stack.emit_logit(out)) + emit_bias > 0) if force_emit is None else force_emit
            if wants or (force_emit is None and self.waited >= max_wait):
                self.text.emit()
                emitted = True
                self.waited = 0
            else:
                self.waited += 1
        token = self.text.next_token()
        latent = stack.flow.sample(out, steps=flow_steps, temperature=temperature, generator=generator)
        last = max(0, self.text.visible - 1)
        if force_advance is None:
            # Move by the head's expected advance, carrying the fraction: the pointer keeps the learned
            # speaking rate (the arg-max would round 2.4 symbols a frame down to 2, every frame).
            s.carry += stack.expected_advance(out)
            advance = int(s.carry)
            s.carry -= advance
        else:
            advance = force_advance
        pointer = min(s.pointer + advance, last)
        pointer = max(pointer, s.pointer) if s.pointer <= last else last
        s.stay = s.stay + 1 if pointer == s.pointer else 0
        s.pointer = pointer
        s.prev_latent = latent
        return SpeechStep(stack.denormalize(latent), token, emitted, pointer)


@torch.no_grad()
def speak_latents(stack: SpeechStack, backbone, tokenizer, text: str, max_frames: int, seed: int = 0,
                  emit_bias: float = 0.0, max_wait: int = 12, settle_frames: int = 6) -> tuple[torch.Tensor, list]:
    """The reference say(): text -> codec latents (n, d), with the frozen backbone (a transformers
    causal LM) reading the speech prefix and then each text token as the stream writes it.

    Stops `settle_frames` after the stack has said everything, or at max_frames. Returns the latents
    and the text token of every frame (None for PAD).
    """
    from transformers import DynamicCache

    device = stack.latent_mean.device
    utterance = plan_utterance(text, tokenizer, PhonemeTable(stack.config.symbols))
    stream = SpeechStream(stack, utterance, device)
    cache = DynamicCache()
    prefix = torch.tensor([tokenizer.encode(SPEECH_PREFIX)], device=device)
    backbone.model(input_ids=prefix, past_key_values=cache, use_cache=True)
    generator = torch.Generator(device=device).manual_seed(seed)
    hidden, latents, tokens, after = None, [], [], 0
    for _ in range(max_frames):
        step = stream.step(hidden, emit_bias=emit_bias, max_wait=max_wait, generator=generator)
        latents.append(step.latent)
        tokens.append(step.token)
        if step.token is not None:
            out = backbone.model(input_ids=torch.tensor([[step.token]], device=device), past_key_values=cache,
                                 use_cache=True)
            hidden = out.last_hidden_state[0, -1].float()
        after = after + 1 if stream.finished else 0
        if after >= settle_frames:
            break
    return torch.cat(latents), tokens
