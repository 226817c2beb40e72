"""`michi-train speak`: the speech stack on a frozen, cached backbone and codec (the CPU recipe).

Shape legend: B - batch, T - frames, D - latent dim, H - backbone width, S - window slots,
K - backbone tokens of an utterance.

Everything that does not train is computed once per utterance and cached (`build_cache`):
- the codec latents of the utterance's audio, with `text_lead` silent frames before it (the text
  leads the audio) and a short silent tail (the model learns to stop);
- the frozen backbone's hidden state at every text token (the backbone reads the speech prefix and
  the utterance's words as text; it never sees a frame, so its language ability is untouched);
- the per-frame replay of the text stream (michi_core.model.speech.TextStream) from piper's own
  phoneme timings: the pointer p_t (the symbol sounding at the frame's centre), when each word is
  emitted (text_lead frames before the pointer reaches it), the window, stay and ahead features,
  and the targets of the timing and advance heads.
A training step then touches only the speech stack (a few M parameters): hours of audio are an
epoch of minutes on two cores. `--cache-backbone false` recomputes the backbone states in every
step instead (same numbers; the test checks it), which is how the joint/LoRA path would train.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from michi_core.model.config import SpeechConfig
from michi_core.model.phonemes import PhonemeTable
from michi_core.model.speech import (
    SPEECH_PREFIX,
    FrameFeatures,
    SpeechStack,
    SpeechTargets,
    TextStream,
    Utterance,
    plan_utterance,
    window_ids,
)

from ..trainer import TrainConfig, step_generator

log = logging.getLogger(__name__)

TAIL_FRAMES = 4  # silent frames after each utterance: the model learns to fall silent at `$`
BACKBONE_BATCH = 32  # utterances per backbone pass when caching


@dataclass
class SpeakStageConfig(TrainConfig):
    out_dir: str = "runs/speak"
    data: str = ""  # a voice corpus (`michi-train data voice`)
    codec: str = ""  # the codec whose latents the stack predicts (a codec or full checkpoint dir)
    cache: str = ""  # where the cached latents/backbone states go (default: <data>/speak_cache)
    init: str = ""  # start from this speak export or checkpoint folder (speech.safetensors); the latent
    # statistics are this codec's: a stack pretrained on another codec's latents (or while the codec
    # trains) keeps what it learned of timing and pronunciation and re-learns the latent mapping
    preset: str = "small"  # backbone and tokenizer
    batch_size: int = 16
    max_frames: int = 96  # crop items to this many frames (7.7 s)
    lr: float = 1e-3
    warmup_steps: int = 200
    steps: int = 20_000
    eval_every: int = 250
    save_every: int = 250
    keep_checkpoints: int = 100  # every saved step stays: the learning curve scores each one
    eval_items: int = 32
    cache_backbone: bool = True  # False: run the frozen backbone inside every step (same result)
    max_items: int = 0  # use at most this many utterances per split (0: all; tests)
    # the stack's shape (SpeechConfig)
    width: int = 256
    num_layers: int = 4
    text_lead: int = 1


def speech_config(cfg: SpeakStageConfig, symbols: tuple[str, ...]) -> SpeechConfig:
    return SpeechConfig(width=cfg.width, num_layers=cfg.num_layers, text_lead=cfg.text_lead, symbols=symbols)


# -- per-utterance replay of the text stream -------------------------------------------------------------
@dataclass
class FramePlan:
    window: np.ndarray  # (T, S) int64
    stay: np.ndarray  # (T,)
    ahead: np.ndarray  # (T,)
    token_index: np.ndarray  # (T,) index of the latest text token written before frame t, -1 if none
    emit: np.ndarray  # (T,) float32
    advance: np.ndarray  # (T,) int64
    tokens: list[int]  # every text token in the order the stream writes them


def pointer_track(symbol_starts: np.ndarray, num_frames: int, frame_s: float, shift_s: float) -> np.ndarray:
    """p_t: the last symbol starting at or before each frame's centre (0, the `^`, before any)."""
    centres = (np.arange(num_frames) + 0.5) * frame_s - shift_s
    return np.maximum(np.searchsorted(symbol_starts, centres, side="right") - 1, 0)


def emission_frames(utterance: Utterance, pointer: np.ndarray, lead: int) -> np.ndarray:
    """The frame each word group enters the text stream: `lead` frames before the pointer first
    reaches it, at most one group per frame (earlier ones move earlier), never before frame 0."""
    num_frames = len(pointer)
    first = np.array([int(np.argmax(pointer >= a)) if (pointer >= a).any() else num_frames
                      for a, _ in utterance.groups], np.int64)
    emit = first - lead
    for g in range(len(emit) - 2, -1, -1):
        emit[g] = min(emit[g], emit[g + 1] - 1)
    for g in range(len(emit)):
        emit[g] = max(emit[g], 0 if g == 0 else emit[g - 1] + 1)
    return emit


def frame_plan(utterance: Utterance, symbol_starts: np.ndarray, num_frames: int, config: SpeechConfig,
               frame_s: float) -> FramePlan:
    pointer = pointer_track(symbol_starts, num_frames, frame_s, config.text_lead * frame_s)
    emit_at = emission_frames(utterance, pointer, config.text_lead)
    stream = TextStream(utterance)
    visible, token_index, stay, tokens = [], [], [], []
    emit = np.zeros(num_frames, np.float32)
    run = 0
    for t in range(num_frames):
        if t > 0:
            run = run + 1 if pointer[t] == pointer[t - 1] else 0
        visible.append(stream.visible)
        token_index.append(stream.tokens_written - 1)
        stay.append(run)
        while not stream.done and emit_at[stream.next_group] <= t:  # one per frame by construction
            stream.emit()
            emit[t] = 1.0
        token = stream.next_token()
        if token is not None:
            tokens.append(token)
    while (token := stream.next_token()) is not None:  # tokens still queued when the audio ends
        tokens.append(token)
    symbol_ids = torch.tensor([utterance.symbol_ids])
    p = torch.from_numpy(pointer)[None]
    vis = torch.tensor([visible])
    window = window_ids(symbol_ids, p, vis, config.window_offsets, config.unseen_id)[0].numpy()
    advance = np.append(np.diff(pointer), 0)
    return FramePlan(window=window, stay=np.asarray(stay), ahead=np.asarray(visible) - 1 - pointer,
                     token_index=np.asarray(token_index), emit=emit, advance=advance, tokens=tokens)


# -- the cache -------------------------------------------------------------------------------------------
def codec_fingerprint(codec_dir: str | Path) -> str:
    return hashlib.sha256(Path(codec_dir, "model.safetensors").read_bytes()).hexdigest()[:16]


@torch.no_grad()
def backbone_states(backbone, tokenizer, tokens: list[int]) -> torch.Tensor:
    """The frozen backbone's final-norm hidden state at each of `tokens`, read after the speech
    prefix: (K, H) float32. The engine feeds the same positions (the parity test checks it)."""
    return backbone_states_batch(backbone, tokenizer, [tokens])[0]


@torch.no_grad()
def backbone_states_batch(backbone, tokenizer, token_lists: list[list[int]]) -> list[torch.Tensor]:
    """backbone_states of several utterances in one pass: rows are right-padded, and a causal model's
    state at a real position never sees the padding after it. One pass reads the 135M weights once
    for all rows (on a CPU the weight traffic, not the arithmetic, is the cost of a short row)."""
    prefix = tokenizer.encode(SPEECH_PREFIX)
    rows = [prefix + tokens for tokens in token_lists]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row)
    hidden = backbone.model(input_ids=ids).last_hidden_state.float()
    return [hidden[i, len(prefix):len(row)].clone() for i, row in enumerate(rows)]


def build_cache(cfg: SpeakStageConfig, codec, backbone, tokenizer, speech: SpeechConfig,
                sample_rate: int, frame_size: int) -> tuple[Path, Path]:
    """Two caches, each one safetensors file per split, built once (delete a folder to rebuild it):
    - text: the frame plans and the backbone states of every usable utterance (codec-independent:
      made while the codec still trains, kept when it changes);
    - latents: the codec's latents of the same utterances, in the same order."""
    suffix = f"-lead{speech.text_lead}" + (f"-max{cfg.max_items}" if cfg.max_items else "")
    root = Path(cfg.cache or Path(cfg.data) / "speak_cache")
    text_dir = root / f"text-{cfg.preset}{suffix}"
    latents_dir = root / f"latents-{codec_fingerprint(cfg.codec)}{suffix}"
    if not (text_dir / "done.json").is_file():
        _build_text_cache(cfg, text_dir, backbone, tokenizer, speech, sample_rate, frame_size)
    if not (latents_dir / "done.json").is_file():
        _build_latent_cache(cfg, text_dir, latents_dir, codec, speech.text_lead, sample_rate, frame_size)
    return text_dir, latents_dir


def padded_frames(samples: int, lead: int, frame_size: int) -> int:
    """Frames of an utterance with `lead` silent frames before it and TAIL_FRAMES after."""
    return -(-(lead * frame_size + samples + TAIL_FRAMES * frame_size) // frame_size)


def _build_text_cache(cfg: SpeakStageConfig, cache: Path, backbone, tokenizer, speech: SpeechConfig,
                      sample_rate: int, frame_size: int) -> None:
    import soundfile as sf

    from training.data.manifest import Manifest
    from training.data.voice_corpus import phoneme_times

    cache.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(cfg.data)
    table = PhonemeTable(speech.symbols)
    frame_s = frame_size / sample_rate
    summary = {}
    for split in ("train", "valid", "test"):
        tensors: dict[str, torch.Tensor] = {}
        items = []
        rows = manifest.rows("filter_reason is null and split = ? and kind = 'utterance' and aligner = 'piper'",
                             [split])
        for row in rows:
            if cfg.max_items and len(items) >= cfg.max_items:
                break
            symbols, starts = phoneme_times(row)
            utterance = plan_utterance(row["text"], tokenizer, table, symbols)  # the corpus checked them
            path = manifest.resolve(row["path"])
            info = sf.info(str(path))
            assert info.samplerate == sample_rate, f"{path}: the voice corpus is stored at {sample_rate} Hz"
            frames = padded_frames(info.frames, speech.text_lead, frame_size)
            plan = frame_plan(utterance, starts, frames, speech, frame_s)
            key = str(len(items))
            tensors[f"{key}.tokens"] = torch.tensor(plan.tokens, dtype=torch.long)
            for name in ("window", "stay", "ahead", "token_index", "emit", "advance"):
                tensors[f"{key}.{name}"] = torch.from_numpy(np.ascontiguousarray(getattr(plan, name)))
            items.append({"id": row["id"], "text": row["text"], "frames": frames, "path": str(path)})
            if len(items) % 200 == 0:
                log.info("speak text cache %s: %d utterances planned", split, len(items))
        for first in range(0, len(items), BACKBONE_BATCH):
            keys = [str(k) for k in range(first, min(first + BACKBONE_BATCH, len(items)))]
            states = backbone_states_batch(backbone, tokenizer, [tensors[f"{k}.tokens"].tolist() for k in keys])
            for k, state in zip(keys, states):
                tensors[f"{k}.backbone"] = state  # fp32: what the engine computes, exactly
        if items:
            save_file(tensors, str(cache / f"{split}.safetensors"))
        (cache / f"{split}.json").write_text(json.dumps(items))
        summary[split] = {"items": len(items), "hours": sum(i["frames"] for i in items) * frame_s / 3600}
        log.info("speak text cache %s: %s", split, summary[split])
    (cache / "done.json").write_text(json.dumps(summary))


def _build_latent_cache(cfg: SpeakStageConfig, text_dir: Path, cache: Path, codec, lead: int, sample_rate: int,
                        frame_size: int) -> None:
    from michi_core.audio import load_audio

    cache.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        items = json.loads((text_dir / f"{split}.json").read_text())
        tensors = {}
        for key, item in enumerate(items):
            wave = load_audio(item["path"], sample_rate)
            padded = np.zeros(item["frames"] * frame_size, np.float32)
            padded[lead * frame_size:lead * frame_size + len(wave)] = wave
            tensors[f"{key}.latents"] = encode_latents(codec, padded)  # (T, D)
            if (key + 1) % 200 == 0:
                log.info("speak latent cache %s: %d utterances", split, key + 1)
        if tensors:
            save_file(tensors, str(cache / f"{split}.safetensors"))
    (cache / "done.json").write_text(json.dumps({"codec": str(cfg.codec)}))


@torch.no_grad()
def encode_latents(codec, wave: np.ndarray) -> torch.Tensor:
    """(t,) float32, a whole number of frames -> the codec's latents (T, D) (posterior means)."""
    with codec.offline() if hasattr(codec, "offline") else torch.no_grad():
        encoded = codec.encode(torch.from_numpy(wave)[None])
    mean = encoded.mean if hasattr(encoded, "mean") and not callable(encoded.mean) else encoded
    return mean[0].float().contiguous()


class CachedSplit:
    """One split of both caches in memory."""

    def __init__(self, caches: tuple[Path, Path], split: str):
        text_dir, latents_dir = caches
        self.items = json.loads((text_dir / f"{split}.json").read_text())
        self.tensors = {}
        if self.items:
            self.tensors = {**load_file(str(text_dir / f"{split}.safetensors")),
                            **load_file(str(latents_dir / f"{split}.safetensors"))}

    def __len__(self) -> int:
        return len(self.items)

    def get(self, index: int, name: str) -> torch.Tensor:
        return self.tensors[f"{index}.{name}"]


# -- batches ---------------------------------------------------------------------------------------------
@dataclass
class SpeakBatch:
    prev_latents: torch.Tensor  # (B, T, D) normalised a_{t-1}
    features: FrameFeatures
    targets: SpeechTargets
    tokens: list[torch.Tensor]  # per row, the utterance's text tokens (K,)
    token_index: torch.Tensor  # (B, T) latest token before frame t (-1 none)
    keep_backbone: torch.Tensor  # (B,) bool: rows whose backbone feature is not dropped


def make_batch(split: CachedSplit, rows: list[int], starts: list[int], length: int, stack: SpeechStack,
               keep_backbone: torch.Tensor, backbone_fn) -> SpeakBatch:
    """Crop rows to `length` frames from `starts`; backbone_fn(row) gives its (K, H) token states."""
    b = len(rows)
    c = stack.config
    d = stack.latent_dim
    latents = torch.zeros(b, length, d)
    prev = torch.zeros(b, length, d)
    window = torch.zeros(b, length, len(c.window_offsets), dtype=torch.long)
    stay = torch.zeros(b, length, dtype=torch.long)
    ahead = torch.zeros(b, length, dtype=torch.long)
    token_index = torch.full((b, length), -1, dtype=torch.long)
    emit = torch.zeros(b, length)
    advance = torch.zeros(b, length, dtype=torch.long)
    mask = torch.zeros(b, length, dtype=torch.bool)
    backbone = None
    tokens = []
    for i, (row, start) in enumerate(zip(rows, starts)):
        full = stack.normalize(split.get(row, "latents"))
        n = min(length, len(full) - start)
        sl = slice(start, start + n)
        latents[i, :n] = full[sl]
        prev[i, :n] = torch.cat([torch.zeros(1, d), full])[sl]
        window[i, :n] = split.get(row, "window")[sl]
        stay[i, :n] = split.get(row, "stay")[sl]
        ahead[i, :n] = split.get(row, "ahead")[sl]
        token_index[i, :n] = split.get(row, "token_index")[sl]
        emit[i, :n] = split.get(row, "emit")[sl]
        advance[i, :n] = split.get(row, "advance")[sl]
        mask[i, :n] = True
        states = backbone_fn(row)  # (K, H)
        if backbone is None:
            backbone = torch.zeros(b, length, states.shape[1])
        idx = token_index[i, :n]
        picked = torch.where((idx >= 0)[:, None], states[idx.clamp_min(0)].float(), 0.0)
        backbone[i, :n] = picked * keep_backbone[i]
        tokens.append(split.get(row, "tokens"))
    return SpeakBatch(prev, FrameFeatures(window, stay, ahead, backbone),
                      SpeechTargets(latents, emit, advance, mask), tokens, token_index, keep_backbone)


# -- the stage -------------------------------------------------------------------------------------------
class SpeakStage:
    name = "speak"

    def __init__(self, config: SpeakStageConfig):
        if not config.data or not config.codec:
            raise SystemExit("--data (a `michi-train data voice` corpus) and --codec (a trained codec) are needed")
        self.config = config

    def build(self, device: torch.device) -> dict[str, torch.nn.Module]:
        from michi_core.model.backbone import build_backbone
        from michi_core.model.codec import Codec
        from michi_core.model.config import preset
        from michi_core.model.phonemes import piper_symbols
        from michi_core.model.tokenizer import load_tokenizer

        cfg = self.config
        self.device = device
        model_config = preset(cfg.preset)
        self.tokenizer = load_tokenizer(model_config.backbone)
        self.backbone = build_backbone(model_config.backbone).eval().requires_grad_(False)
        codec = Codec.from_pretrained(cfg.codec).eval()
        self.speech_config = speech_config(cfg, piper_symbols())
        self.caches = build_cache(cfg, codec, self.backbone, self.tokenizer, self.speech_config,
                                     codec.config.sample_rate, codec.config.frame_size)
        self.codec_config = codec.config
        self.train = CachedSplit(self.caches, "train")
        self.valid = CachedSplit(self.caches, "valid")
        if len(self.train) == 0:
            raise SystemExit(f"{cfg.data}: no usable training utterances")
        stack = SpeechStack(self.speech_config, codec.config.latent_dim, model_config.backbone.hidden_size)
        all_latents = torch.cat([self.train.get(i, "latents") for i in range(len(self.train))])
        if cfg.init:
            state = load_file(str(Path(cfg.init) / "speech.safetensors"))
            state = {k: v for k, v in state.items() if k not in ("latent_mean", "latent_std", "silence")}
            stack.load_state_dict(state, strict=False)
            log.info("speak stage: initialised from %s", cfg.init)
        stack.latent_mean.copy_(all_latents.mean(0))
        stack.latent_std.copy_(all_latents.std(0).clamp_min(1e-3))
        # every cached utterance starts with text_lead silent frames
        stack.silence.copy_(torch.stack([self.train.get(i, "latents")[0] for i in range(len(self.train))]).mean(0))
        self.stack = stack.to(device)
        self.train_seconds: float | None = None  # wall time spent in training steps (the learning curve's x)
        Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
        (Path(cfg.out_dir) / "speech_config.json").write_text(json.dumps(dataclasses.asdict(self.speech_config)))
        log.info("speak stage: %d train / %d valid utterances, stack %.2fM parameters, cache %s",
                 len(self.train), len(self.valid), sum(p.numel() for p in stack.parameters()) / 1e6, self.caches)
        return {"speech": self.stack}

    def optimizers(self, modules):
        return {"speech": torch.optim.AdamW(modules["speech"].parameters(), self.config.lr, weight_decay=0.01)}

    def backbone_fn(self, split: CachedSplit):
        if self.config.cache_backbone:
            return lambda row: split.get(row, "backbone")
        return lambda row: backbone_states(self.backbone, self.tokenizer, split.get(row, "tokens").tolist())

    def batch(self, step: int, micro: int, rank: int, world: int) -> SpeakBatch:
        cfg = self.config
        g = step_generator(cfg.seed, step, micro, rank)
        per_rank = max(1, cfg.batch_size // (world * cfg.grad_accum))
        rows = torch.randint(0, len(self.train), (per_rank,), generator=g).tolist()
        starts = [int(torch.randint(0, max(1, self.train.items[r]["frames"] - cfg.max_frames + 1), (),
                                    generator=g)) for r in rows]
        keep = (torch.rand(per_rank, generator=g) >= self.speech_config.backbone_dropout).float()
        return make_batch(self.train, rows, starts, cfg.max_frames, self.stack, keep, self.backbone_fn(self.train))

    def train_step(self, batch: SpeakBatch, step: int, ctx) -> dict[str, float]:
        started = time.perf_counter()
        if self.train_seconds is None:  # resumed runs go on counting from their last logged step
            logged = [h["train_seconds"] for h in ctx.trainer.history if "train_seconds" in h]
            self.train_seconds = logged[-1] if logged else 0.0
        stack = ctx.trainer.modules["speech"]
        g = step_generator(self.config.seed + 1, step, ctx.micro)
        losses = stack.loss(batch.prev_latents.to(self.device), _to(batch.features, self.device),
                            _to(batch.targets, self.device), generator=g if self.device.type == "cpu" else None)
        ctx.backward(losses.total, ["speech"])
        ctx.step("speech")
        self.train_seconds += time.perf_counter() - started
        return {**losses.as_dict(), "train_seconds": self.train_seconds}

    @torch.no_grad()
    def evaluate(self, step: int) -> dict[str, float]:
        if len(self.valid) == 0:
            return {}
        rows = list(range(min(self.config.eval_items, len(self.valid))))
        length = max(self.valid.items[r]["frames"] for r in rows)
        batch = make_batch(self.valid, rows, [0] * len(rows), length, self.stack, torch.ones(len(rows)),
                           self.backbone_fn(self.valid))
        losses = self.stack.loss(batch.prev_latents.to(self.device), _to(batch.features, self.device),
                                 _to(batch.targets, self.device), generator=torch.Generator().manual_seed(0))
        return losses.as_dict()

    def export(self, directory: Path) -> None:
        save_speech_stack(self.stack, directory)
        log.info("exported the speech stack to %s", directory)


def _to(obj, device):
    return type(obj)(**{k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in obj.__dict__.items()})


def save_speech_stack(stack: SpeechStack, directory: str | Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "speech_config.json").write_text(json.dumps(dataclasses.asdict(stack.config), indent=1))
    save_file({k: v.detach().contiguous() for k, v in stack.state_dict().items()},
              str(directory / "speech.safetensors"))


def add_speak_command(subparsers) -> None:
    from ..trainer import add_config_arguments

    p = subparsers.add_parser("speak", help="train the speech stack (timing, pronunciation, flow) on a "
                                            "frozen, cached backbone and codec: the CPU recipe")
    add_config_arguments(p, SpeakStageConfig)
    p.set_defaults(func=run_speak_command)
    curve = subparsers.add_parser("speak-curve", help="say() WER of every saved checkpoint of a speak run "
                                                      "(the learning curve; run it again as training goes on)")
    curve.add_argument("--run", dest="run_dir", required=True, metavar="DIR", help="the speak run's --out-dir")
    curve.add_argument("--data", required=True, metavar="CORPUS", help="the voice corpus (held-out sentences)")
    curve.add_argument("--codec", required=True, metavar="DIR", help="the codec the run was trained for")
    curve.add_argument("--limit", type=int, default=12, help="held-out sentences per checkpoint")
    curve.add_argument("--whisper", default="base")
    curve.add_argument("--every", type=int, default=1, help="only steps that are multiples of this")
    curve.set_defaults(func=run_curve_command)
    export = subparsers.add_parser("speak-export", help="a full model checkpoint (float16) from a speak run "
                                                        "and its codec: what ships in assets/checkpoints/<preset>")
    export.add_argument("--run", dest="run_dir", required=True, metavar="DIR", help="the speak run's --out-dir")
    export.add_argument("--codec", required=True, metavar="DIR")
    export.add_argument("--out", required=True, metavar="DIR")
    export.add_argument("--step", type=int, help="this saved step instead of the export (the best of the curve)")
    export.add_argument("--preset", default="small")
    export.set_defaults(func=run_export_command)


def run_speak_command(args) -> int:
    from ..trainer import Trainer, config_from_arguments

    config = config_from_arguments(SpeakStageConfig, args)
    Trainer(SpeakStage(config)).fit(resume=args.resume)
    return 0


def run_curve_command(args) -> int:
    from training.eval.speak_eval import learning_curve

    for point in learning_curve(args.run_dir, args.data, args.codec, args.limit, args.whisper, every=args.every):
        print(json.dumps({k: point[k] for k in ("step", "train_seconds", "wer")}))
    return 0


def assemble_checkpoint(speech_dir: str | Path, codec_dir: str | Path, out: str | Path,
                        preset_name: str = "small", weights: str | Path | None = None) -> Path:
    """A full Michi checkpoint from a speak run and its codec: the preset's config with this speech
    stack and codec, weights in float16 (config.json + model.safetensors; the backbone comes from its
    package). `weights`: a checkpoint's speech.safetensors instead of the export's."""
    from michi_core.model.codec import Codec
    from michi_core.model.config import preset
    from michi_core.model.model import CONFIG_FILE, WEIGHTS_FILE, MichiModel
    from training.eval.speak_eval import load_stack

    stack = load_stack(speech_dir, weights)
    codec = Codec.from_pretrained(codec_dir)
    config = preset(preset_name)
    config.codec = codec.config
    config.speech = stack.config
    model = MichiModel(config)
    model.codec.load_state_dict(codec.state_dict())
    model.speech.load_state_dict(stack.state_dict())
    out = Path(out)
    model.save_pretrained(out)
    state = load_file(str(out / WEIGHTS_FILE))
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    for k, v in half.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise ValueError(f"{k} overflows float16: not shipped")
    from safetensors import safe_open

    with safe_open(str(out / WEIGHTS_FILE), "pt") as f:
        metadata = f.metadata()
    save_file(half, str(out / WEIGHTS_FILE), metadata=metadata)
    log.info("assembled %s (%.1f MB) from %s and %s", out, (out / WEIGHTS_FILE).stat().st_size / 1e6, speech_dir,
             codec_dir)
    assert (out / CONFIG_FILE).is_file()
    return out


def run_export_command(args) -> int:
    run = Path(args.run_dir)
    weights = run / "checkpoints" / f"step_{args.step:08d}" / "speech.safetensors" if args.step else None
    source = run if weights else run / "export"
    print(assemble_checkpoint(source, args.codec, args.out, args.preset, weights))
    return 0
