"""MichiModel: the backbone, the listen head, the flow speak head and the codec, as one module.

Shape legend: b - batch, L - positions, n - frames, t - samples, h - backbone width,
d - latent dim, V - vocabulary.

A sequence mixes two kinds of positions:
- a *text position* (system prompt, RAG context, typed text) is the text embedding E(token);
- a *frame position* t is E(y_{t-1}) + A(a_{t-1}) + U(u_t): the model's previous text token and
  previous audio latent (what it just said), plus the listen head's embedding of the user's
  audio frame t (what it hears now).
The backbone state h_t at frame t gives the text logits for y_t; the flow head then samples a_t
conditioned on h_t + E(y_t). Text comes first, then audio: the inner monologue.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from michi_core.model.backbone import build_backbone
from michi_core.model.codec import Codec
from michi_core.model.config import CheckpointError, MichiConfig
from michi_core.model.flow import FlowHead
from michi_core.model.listen import ListenHead
from michi_core.model.speech import SpeechStack
from michi_core.model.streaming import StreamingModule
from michi_core.model.tokenizer import Tokenizer, load_tokenizer

log = logging.getLogger(__name__)

IGNORE = -100  # target value that no loss looks at
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


@dataclass
class MichiBatch:
    input_ids: torch.Tensor  # (b, L) text token at text positions; y_{t-1} at frame positions
    frame_mask: torch.Tensor  # (b, L) bool: True at frame positions; every row has n of them
    prev_latents: torch.Tensor  # (b, L, d) a_{t-1} at frame positions, zeros elsewhere
    user_audio: torch.Tensor  # (b, n * frame_size) the user's channel, aligned to the frames
    text_targets: torch.Tensor  # (b, L) next text token (y_t at frames), IGNORE where none
    latent_targets: torch.Tensor  # (b, L, d) a_t at frame positions
    latent_mask: torch.Tensor  # (b, L) bool: which latent targets count
    user_text_targets: torch.Tensor | None = None  # (b, n) the user's token per frame, IGNORE where none
    attention_mask: torch.Tensor | None = None  # (b, L) 1 for real positions, 0 for right padding

    def to(self, device: torch.device | str) -> MichiBatch:
        return MichiBatch(**{k: (v.to(device) if isinstance(v, torch.Tensor) else v)
                             for k, v in self.__dict__.items()})


@dataclass
class TextBatch:
    """Text-only rows (the joint stage mixes them in to keep the backbone's language ability)."""

    tokens: torch.Tensor  # (b, L)
    mask: torch.Tensor  # (b, L) bool: real tokens

    def to(self, device: torch.device | str) -> TextBatch:
        return TextBatch(self.tokens.to(device), self.mask.to(device))


@dataclass
class MichiLosses:
    total: torch.Tensor
    text: torch.Tensor  # CE of the model's text stream (PAD down-weighted)
    flow: torch.Tensor  # rectified-flow loss on the audio latents
    listen: torch.Tensor  # CE of the user's text from the listen head

    def as_dict(self) -> dict[str, float]:
        return {k: float(v.detach()) for k, v in self.__dict__.items()}


def shift_right(x: torch.Tensor, fill: float | int) -> torch.Tensor:
    """Along dim 1: out[:, 0] = fill, out[:, i] = x[:, i - 1]."""
    first = torch.full_like(x[:, :1], fill)
    return torch.cat([first, x[:, :-1]], dim=1)


def build_batch(context: torch.Tensor, model_text: torch.Tensor, model_latents: torch.Tensor,
                user_audio: torch.Tensor, pad_id: int, *, context_mask: torch.Tensor | None = None,
                frame_mask: torch.Tensor | None = None, latent_mask: torch.Tensor | None = None,
                user_text: torch.Tensor | None = None) -> MichiBatch:
    """THE sequence layout: what every training stage trains on and what the engine's step replays.

    Each row is [its context tokens, left-padded][n frames, right-padded]. Frame t's input is the
    model's previous text token y_{t-1} and latent a_{t-1} (PAD and zeros before the first frame)
    plus the user's audio of frame t; its targets are y_t and a_t. Context positions are text the
    model reads (system prompt, voice transcript, documents): they have no targets. Padding is
    masked out of attention and of every loss (RoPE is relative, so left padding shifts nothing).

    context (b, L) token ids, `context_mask` (b, L) saying which are real (default: all; real tokens
    come first in each row, as collate_frames gives them); model_text (b, n) y_t; model_latents
    (b, n, d) a_t; user_audio (b, n * frame_size); frame_mask (b, n) real frames (default: all);
    latent_mask (b, n) which latent targets count (default: frame_mask); user_text (b, n) the user's
    token per frame, or None.
    """
    b, n = model_text.shape
    d = model_latents.shape[-1]
    device = model_text.device
    assert model_latents.shape[:2] == (b, n), "one model text token and one latent per frame"
    if context_mask is None:
        context_mask = torch.ones_like(context, dtype=torch.bool)
    if frame_mask is None:
        frame_mask = torch.ones(b, n, dtype=torch.bool, device=device)
    latent_mask = frame_mask if latent_mask is None else latent_mask & frame_mask
    lengths = context_mask.sum(1)
    width = int(lengths.max()) if context.numel() else 0
    left = torch.full((b, width), pad_id, dtype=torch.long, device=device)
    left_mask = torch.zeros(b, width, dtype=torch.bool, device=device)
    for row in range(b):
        k = int(lengths[row])
        if k:
            left[row, width - k:] = context[row][context_mask[row]]
            left_mask[row, width - k:] = True
    no_frames = torch.zeros_like(left_mask)
    zeros = model_latents.new_zeros(b, width, d)
    return MichiBatch(
        input_ids=torch.cat([left, shift_right(model_text, pad_id)], dim=1),
        frame_mask=torch.cat([no_frames, torch.ones_like(frame_mask)], dim=1),
        prev_latents=torch.cat([zeros, shift_right(model_latents, 0.0)], dim=1),
        user_audio=user_audio,
        text_targets=torch.cat([torch.full_like(left, IGNORE), torch.where(frame_mask, model_text, IGNORE)], dim=1),
        latent_targets=torch.cat([zeros, model_latents], dim=1),
        latent_mask=torch.cat([no_frames, latent_mask], dim=1),
        user_text_targets=None if user_text is None else torch.where(frame_mask, user_text, IGNORE),
        attention_mask=torch.cat([left_mask, frame_mask], dim=1).long(),
    )


@dataclass
class SequenceOutputs:
    """What the training forward computes before its losses; the engine's step must reproduce it."""

    hidden: torch.Tensor  # (b, L, h) backbone states
    user_embeds: torch.Tensor  # (b, n, h) listen head
    text_logits: torch.Tensor  # (b, L, V)
    flow_condition: torch.Tensor  # (b, L, h): h_t + E(y_t), y_t the text target (PAD where none)


@dataclass
class HeardFrame:
    embed: torch.Tensor  # (1, 1, h) the listen head's embedding of the user's frame
    token: int  # the token the listen head heard the user start in it


@dataclass
class SpokenFrame:
    latent: torch.Tensor  # (1, d) the audio latent a_t
    audio: torch.Tensor  # (frame_size,) its sound
    condition: torch.Tensor  # (1, h) what the flow head was conditioned on
    flow_done: float  # clock time when the latent was ready (the rest is the codec's)


class MichiModel(StreamingModule):
    def __init__(self, config: MichiConfig, backbone: nn.Module | None = None, meta: bool = False):
        super().__init__()
        self.config = config
        h = config.backbone.hidden_size
        d = config.codec.latent_dim
        self.backbone = backbone if backbone is not None else build_backbone(config.backbone, meta=meta)
        if config.adapter.rank > 0:
            self.add_adapter()
        with torch.device("meta" if meta else "cpu"):
            self.codec = Codec(config.codec)
            self.listen = ListenHead(config.listen, config.codec, h)
            if config.speech is None:  # the end-to-end layout: frames enter the backbone
                self.flow = FlowHead(config.flow, d, cond_dim=h)
                self.audio_in = nn.Linear(d, h)  # A: the model's own previous latent into the backbone
                self.speech = None
            else:  # the speech stack says the backbone's words; the backbone reads text only
                self.speech = SpeechStack(config.speech, d, h)
                self.flow = self.audio_in = None
        self._tokenizer: Tokenizer | None = None

    def _named_streaming_modules(self) -> list[tuple[str, StreamingModule]]:
        """The heads' and the codec's streaming layers; the backbone has none (its KV cache belongs to
        the session), so it is not walked at every step."""
        return [("", self)] + [(f"{child_name}.{name}" if name else child_name, m)
                               for child_name, child in self.named_children() if child_name != "backbone"
                               for name, m in child.named_modules() if isinstance(m, StreamingModule)]

    def add_adapter(self) -> None:
        """Inject LoRA layers (peft) into the backbone in place; the base weights are frozen."""
        from peft import LoraConfig, inject_adapter_in_model

        a = self.config.adapter
        if any("lora_" in name for name, _ in self.backbone.named_parameters()):
            return
        lora = LoraConfig(r=a.rank, lora_alpha=a.alpha, lora_dropout=a.dropout, target_modules=list(a.target_modules))
        self.backbone = inject_adapter_in_model(lora, self.backbone)
        for name, p in self.backbone.named_parameters():
            p.requires_grad = "lora_" in name

    # -- pieces --------------------------------------------------------------------------------------
    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.config.backbone)
        return self._tokenizer

    @property
    def text_embedding(self) -> nn.Embedding:
        return self.backbone.get_input_embeddings()

    # The backbone may run in a lower precision (bf16 inference) than the heads and the codec,
    # which stay fp32: these four methods are the only places the two meet, and they cast.
    def embed_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.text_embedding(tokens).float()  # (..., h)

    def embed_frames(self, prev_text: torch.Tensor, prev_latents: torch.Tensor,
                     user_embeds: torch.Tensor) -> torch.Tensor:
        """(b, n), (b, n, d), (b, n, h) -> frame-position inputs (b, n, h)."""
        return self.embed_text(prev_text) + self.audio_in(prev_latents) + user_embeds

    def run_backbone(self, inputs_embeds: torch.Tensor, **kwargs) -> tuple[torch.Tensor, object]:
        """(b, L, h) -> final-norm hidden states (b, L, h) and the updated KV cache."""
        dtype = self.text_embedding.weight.dtype
        out = self.backbone.model(inputs_embeds=inputs_embeds.to(dtype), **kwargs)
        return out.last_hidden_state.float(), out.past_key_values

    def text_logits(self, hidden: torch.Tensor, only: list[int] | None = None) -> torch.Tensor:
        """(..., h) -> (..., V); with `only`, just those tokens' logits (..., len(only))."""
        head = self.backbone.lm_head
        if only is None:
            return head(hidden.to(head.weight.dtype)).float()
        rows = head.weight[only]  # (k, h)
        logits = hidden.to(rows.dtype) @ rows.t()
        if head.bias is not None:
            logits = logits + head.bias[only]
        return logits.float()

    def flow_condition(self, hidden: torch.Tensor, text_tokens: torch.Tensor) -> torch.Tensor:
        """The speak head hears the backbone state and the text token just chosen: (..., h)."""
        return hidden + self.embed_text(text_tokens)

    # -- training forward ------------------------------------------------------------------------------
    def sequence_embeds(self, batch: MichiBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs of every position (b, L, h), and the user embeddings per frame (b, n, h)."""
        assert self.speech is None, (
            "a model with a speech stack reads no frames in its backbone: train it with `michi-train speak`")
        user_embeds = self.listen(batch.user_audio)  # (b, n, h)
        b, n, h = user_embeds.shape
        counts = batch.frame_mask.sum(dim=1)
        assert bool((counts == n).all()), (
            f"every row needs exactly {n} frame positions (one per {self.config.codec.frame_size} user samples), "
            f"got {counts.tolist()}"
        )
        mask = batch.frame_mask
        frames = self.embed_frames(batch.input_ids[mask][None], batch.prev_latents[mask][None],
                                   user_embeds.reshape(1, b * n, h))[0]  # (b * n, h), row-major like mask
        embeds = self.embed_text(batch.input_ids).masked_scatter(mask[..., None], frames)
        return embeds, user_embeds

    def outputs(self, batch: MichiBatch) -> SequenceOutputs:
        """The full-sequence pass of training: backbone states, text logits and flow conditions."""
        embeds, user_embeds = self.sequence_embeds(batch)
        hidden, _ = self.run_backbone(embeds, attention_mask=batch.attention_mask, use_cache=False)
        cond = self.flow_condition(hidden, batch.text_targets.clamp_min(0))
        return SequenceOutputs(hidden, user_embeds, self.text_logits(hidden), cond)

    # -- one frame, streaming (inside `with model.using(state):`, see DuplexSession) ------------------
    def hear(self, frame: torch.Tensor) -> HeardFrame:
        """The user's next frame (1, frame_size) -> its listen embedding and the token heard in it."""
        embed = self.listen(frame)  # (1, 1, h)
        token = int(self.listen.text_logits(embed[:, -1], self.text_embedding.weight).argmax(-1))
        return HeardFrame(embed, token)

    def speak(self, hidden: torch.Tensor, token: int, steps: int = 1, temperature: float = 1.0,
              generator: torch.Generator | None = None, latent: torch.Tensor | None = None,
              clock=None) -> SpokenFrame:
        """The backbone state h_t (1, h) and the chosen text token y_t -> the next latent and its sound.

        `latent` replaces the flow head's sample (teacher forcing); `clock` times the flow apart
        from the codec (the session passes its own, which synchronizes CUDA).
        """
        cond = self.flow_condition(hidden, torch.tensor([token], device=hidden.device))  # (1, h)
        if latent is None:
            latent = self.flow.sample(cond, steps=steps, temperature=temperature, generator=generator)
        latent = latent.reshape(1, -1)
        flow_done = clock() if clock is not None else 0.0
        audio = self.codec.decode(latent[:, None])[0]  # (frame_size,)
        return SpokenFrame(latent, audio, cond, flow_done)

    def voice(self, latent: torch.Tensor, clock=None) -> SpokenFrame:
        """A latent the speech stack chose (1, d) -> its sound, through the streaming codec."""
        latent = latent.reshape(1, -1)
        flow_done = clock() if clock is not None else 0.0
        audio = self.codec.decode(latent[:, None])[0]  # (frame_size,)
        return SpokenFrame(latent, audio, latent, flow_done)

    def forward(self, batch: MichiBatch | TextBatch, generator: torch.Generator | None = None) -> MichiLosses:
        if isinstance(batch, TextBatch):
            return self._text_only_loss(batch)
        cfg = self.config.loss
        pad_id = self.tokenizer.pad_id
        out = self.outputs(batch)
        text_loss = self._weighted_ce(out.text_logits, batch.text_targets, pad_id)

        latent_mask = batch.latent_mask
        flow_loss = self.flow.loss(batch.latent_targets[latent_mask], out.flow_condition[latent_mask],
                                   generator=generator)

        if batch.user_text_targets is not None:
            user_logits = self.listen.text_logits(out.user_embeds, self.text_embedding.weight)
            listen_loss = self._weighted_ce(user_logits, batch.user_text_targets, pad_id)
        else:
            listen_loss = flow_loss.new_zeros(())
        total = cfg.text_weight * text_loss + cfg.flow_weight * flow_loss + cfg.listen_weight * listen_loss
        return MichiLosses(total, text_loss, flow_loss, listen_loss)

    def _text_only_loss(self, batch: TextBatch) -> MichiLosses:
        """Next-token loss of the backbone alone on text rows."""
        hidden, _ = self.run_backbone(self.embed_text(batch.tokens), attention_mask=batch.mask.long(), use_cache=False)
        logits = self.text_logits(hidden[:, :-1])  # (b, L - 1, V)
        targets = torch.where(batch.mask[:, 1:], batch.tokens[:, 1:], IGNORE)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE)
        zero = loss.new_zeros(())
        return MichiLosses(loss, loss, zero, zero)

    def _weighted_ce(self, logits: torch.Tensor, targets: torch.Tensor, pad_id: int) -> torch.Tensor:
        """Mean CE over counted targets, PAD targets weighted by config.loss.pad_weight."""
        counted = targets != IGNORE
        if not bool(counted.any()):
            return logits.new_zeros(())
        losses = F.cross_entropy(logits[counted].float(), targets[counted], reduction="none")
        weights = torch.where(targets[counted] == pad_id, self.config.loss.pad_weight, 1.0)
        return (losses * weights).sum() / weights.sum()

    # -- checkpoints -------------------------------------------------------------------------------------
    def _saved_state(self, include_backbone: bool) -> dict[str, torch.Tensor]:
        state = self.state_dict()
        if not include_backbone:  # heads, codec and the LoRA delta (if any); the base comes from its source
            state = {k: v for k, v in state.items() if not k.startswith("backbone.") or "lora_" in k}
        elif self.config.backbone.tie_embeddings:
            state.pop("backbone.lm_head.weight", None)  # tied: the same tensor as embed_tokens
        return {k: v.detach().contiguous() for k, v in state.items()}

    def save_pretrained(self, directory: str | Path, include_backbone: bool | None = None) -> None:
        """config.json + model.safetensors. The backbone is left out when it has a source of its own."""
        if include_backbone is None:
            include_backbone = self.config.backbone.source == "random"
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.config.save(directory / CONFIG_FILE)
        metadata = {"format_version": str(self.config.format_version), "preset": self.config.preset,
                    "includes_backbone": json.dumps(include_backbone)}
        save_file(self._saved_state(include_backbone), str(directory / WEIGHTS_FILE), metadata=metadata)

    @classmethod
    def from_pretrained(cls, directory: str | Path, config: MichiConfig | None = None,
                        backbone: nn.Module | None = None) -> MichiModel:
        """Load a checkpoint directory. `config`, when given, must match the saved one."""
        directory = Path(directory)
        config_data, weights_path = check_checkpoint_files(directory)
        try:
            saved_config = MichiConfig.from_dict(config_data)
        except (ValueError, TypeError) as error:
            raise CheckpointError(f"{directory / CONFIG_FILE}: {error}") from error
        if config is not None and config.to_dict() != saved_config.to_dict():
            differing = _diff_keys(config.to_dict(), saved_config.to_dict())
            raise CheckpointError(f"checkpoint {directory} was made with a different config (differs in: {differing})")
        state = read_safetensors(weights_path)
        includes_backbone = any(k.startswith("backbone.") and "lora_" not in k for k in state)
        if includes_backbone:  # the file has the weights: build the shapes, skip loading the source
            backbone = build_backbone(dataclasses.replace(saved_config.backbone, source="random"))
        elif saved_config.backbone.source == "random" and backbone is None:
            raise CheckpointError(f"{directory} holds no backbone weights and its config has no backbone source")
        elif saved_config.backbone.source == "pretrained" and backbone is None:
            source = saved_config.backbone.name_or_path
            if not source or not Path(source).is_dir():
                raise CheckpointError(
                    f"{directory}: its backbone is {source!r}, not a folder on this computer. A checkpoint "
                    "never makes Michi download anything: download the backbone yourself and set "
                    "backbone.name_or_path in its config.json to that folder")
        model = cls(saved_config, backbone=backbone)
        expected = model._saved_state(include_backbone=includes_backbone)
        _check_state(directory, expected, state)
        model.load_state_dict(state, strict=False)
        if includes_backbone and saved_config.backbone.tie_embeddings:
            model.backbone.tie_weights()
        return model


def check_checkpoint_files(directory: str | Path) -> tuple[dict, Path]:
    """(config.json as a dict, the weights' path) of a checkpoint folder, or a CheckpointError
    saying what is wrong. Weights are read only from safetensors, never from a pickle."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not directory.is_dir():
        raise CheckpointError(f"{directory} is not a Michi checkpoint: there is no such folder (a checkpoint is "
                              f"a folder with {CONFIG_FILE} and {WEIGHTS_FILE})")
    if not weights_path.is_file() and (any(directory.glob("*.bin")) or any(directory.glob("*.pt*"))):
        raise CheckpointError(f"{directory} holds PyTorch pickle weights, which Michi never loads (a pickle can "
                              f"run code): it needs {WEIGHTS_FILE}")
    if not config_path.is_file() or not weights_path.is_file():
        raise CheckpointError(f"{directory} is not a Michi checkpoint: it needs {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        data = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{config_path} is not readable JSON ({error})") from error
    if not isinstance(data, dict):
        raise CheckpointError(f"{config_path} must hold a JSON object (a config), not a {type(data).__name__}")
    return data, weights_path


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors, or a CheckpointError for a damaged, truncated or foreign file
    (the library's own errors name neither the file nor what to do)."""
    from safetensors import SafetensorError

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path} is not a usable safetensors file ({error}): it is damaged or "
                              "not a Michi checkpoint; copy or export it again") from error


def check_safetensors(path: str | Path) -> None:
    """Read a safetensors file's header only (cheap), raising CheckpointError when it is junk, too
    large or does not fit the file: what loaders that read it whole would fail on obscurely."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as weights:
            list(weights.keys())
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path} is not a usable safetensors file ({error}): it is damaged or "
                              "not a Michi checkpoint; copy or export it again") from error


def _diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = []
    for k in sorted(set(a) | set(b)):
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            keys += _diff_keys(a[k], b[k], f"{prefix}{k}.")
        elif a.get(k) != b.get(k):
            keys.append(prefix + k)
    return keys


def _check_state(directory: Path, expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> None:
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in set(expected) & set(state) if expected[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{directory}/{WEIGHTS_FILE} does not fit this model: {len(missing)} missing "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}), "
            f"{len(wrong)} with other shapes (e.g. {sorted(wrong)[:3]}); was it made by another Michi version?"
        )


ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets"
DEFAULT_CHECKPOINT = ASSETS_DIR / "checkpoints" / "small"  # the shipped, trained `small` model
SHIPPED_CODECS = ASSETS_DIR / "codecs"  # trained codecs, one folder per preset (config + safetensors + EVAL.md)


def shipped_codec(preset_name: str) -> Path | None:
    """The trained codec shipped for a preset, if there is one."""
    directory = SHIPPED_CODECS / preset_name
    return directory if (directory / "config.json").is_file() else None


def load_shipped_codec(model: MichiModel) -> bool:
    """Put the preset's shipped, trained codec into a model built from the preset (its heads stay as
    they are). False when none is shipped or it was trained for another codec config."""
    directory = shipped_codec(model.config.preset)
    if directory is None:
        return False
    codec = Codec.from_pretrained(directory)
    if codec.config != model.config.codec:
        log.warning("%s was trained for another codec config than the %s preset's; not used", directory,
                    model.config.preset)
        return False
    model.codec.load_state_dict(codec.state_dict())
    return True


def load_model(checkpoint: str | Path | None = None, preset_name: str | None = None,
               random_backbone: bool = False) -> MichiModel:
    """A checkpoint directory if given; else the preset (default: the shipped checkpoint, or `small`).

    A preset without a checkpoint has untrained speech heads (fine for benchmarks and tests) and the
    preset's shipped, trained codec when there is one (assets/codecs/<preset>).
    `random_backbone` skips loading pretrained backbone weights (sizes only matter).
    """
    from michi_core.model.config import preset

    if checkpoint is not None:
        return MichiModel.from_pretrained(checkpoint)
    if preset_name is None and (DEFAULT_CHECKPOINT / CONFIG_FILE).is_file():
        return MichiModel.from_pretrained(DEFAULT_CHECKPOINT)
    config = preset(preset_name or "small")
    if random_backbone:
        config.backbone = dataclasses.replace(config.backbone, source="random")
    model = MichiModel(config)
    load_shipped_codec(model)
    return model
