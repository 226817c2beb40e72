"""Speech, joint and duplex stages: teach the backbone to listen and speak.

Shape legend: B - batch, T - frames, F - samples per frame, L - context tokens, D - latent dim.

- speech: listen head, flow head and projections learn on a *frozen* backbone and codec. Each
  utterance is used on the model's channel (it says the words: inner-monologue text CE with PAD
  down-weighted + flow loss on the codec latents) or on the user's channel (it hears them:
  listen-head text loss, and its own channel stays silent).
- joint: the same, end to end, with the backbone adapted through LoRA (peft) and text-only
  batches mixed in so that its language ability is kept (and the shipped delta stays small).
- duplex: two-channel dialogues: listening while speaking, yielding when talked over,
  backchannels, answering from a text context.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import ClassVar

import torch

from michi_core.model.codec import Codec
from michi_core.model.config import preset
from michi_core.model.model import MichiBatch, MichiModel, TextBatch, build_batch

from ..trainer import TrainConfig, step_generator

log = logging.getLogger(__name__)



class StageMode(StrEnum):
    SPEECH = "speech"  # heads on a frozen backbone, one utterance per row
    JOINT = "joint"  # end to end through LoRA, text-only batches mixed in
    DUPLEX = "duplex"  # end to end through LoRA, two-channel dialogues


@dataclass
class SpeechStageConfig(TrainConfig):
    out_dir: str = "runs/speech"
    mode: StageMode = StageMode.SPEECH  # which of the three stages (a string in saved configs)
    preset: str = "small"
    data: str = ""  # a corpus directory built by `michi-train data`
    init: str = ""  # the previous stage's exported checkpoint (joint, duplex)
    codec: str = ""  # the codec stage's export (speech); ignored when init is given
    max_frames: int = 64  # crop items to this many frames (5.1 s)
    batch_size: int = 8
    lr: float = 3e-4
    lora_rank: int = 16  # joint and duplex
    text_every: int = 4  # joint: one text-only batch after every N frame batches
    user_share: float = 0.3  # share of utterances heard on the user's channel rather than spoken
    eval_batches: int = 4


def batch_to_michi(frames: dict, model: MichiModel, device: torch.device) -> MichiBatch:
    """A collated frame batch (training.data.dataset.collate_frames) -> the model's sequence layout
    (michi_core.model.model.build_batch, which the engine's step replays)."""
    frame_mask = frames["frame_mask"].to(device)  # (B, T)
    if "latents_model" in frames:
        latents = frames["latents_model"].to(device)  # (B, T, D) cached by the codec stage
        latent_mask = frames["latent_mask"].to(device)
    else:
        with torch.no_grad(), model.codec.offline():
            latents = model.codec.encode(frames["audio_model"].to(device)).mean
        latent_mask = None
    return build_batch(frames["context"].to(device), frames["text_model"].to(device), latents,
                       frames["audio_user"].to(device), model.tokenizer.pad_id,
                       context_mask=frames["context_mask"].to(device), frame_mask=frame_mask,
                       latent_mask=latent_mask, user_text=frames["text_user"].to(device))


class FrameStage:
    """What the three frame stages share: the model, the data, the step, evaluation, export.

    A subclass says what it trains (`adapts_backbone`), on which items (`kinds`), whether
    utterances are also heard on the user's channel (`hears_user`) and whether text-only batches
    are mixed in (`mixes_text`).
    """

    mode: ClassVar[StageMode]
    adapts_backbone: ClassVar[bool] = True  # LoRA on the backbone; False: the backbone is frozen
    kinds: ClassVar[tuple[str, ...]] = ("utterance",)
    hears_user: ClassVar[bool] = True
    mixes_text: ClassVar[bool] = False

    def __init__(self, config: SpeechStageConfig):
        if not config.data:
            raise SystemExit("--data: give the corpus directory built by `michi-train data synth`")
        self.config = config
        self.name = str(self.mode)

    # -- model ----------------------------------------------------------------------------------------------
    def build(self, device: torch.device) -> dict[str, torch.nn.Module]:
        cfg = self.config
        self.device = device
        if cfg.init:
            model = MichiModel.from_pretrained(cfg.init)
        else:
            model = MichiModel(preset(cfg.preset))
            if cfg.codec:
                model.codec.load_state_dict(Codec.from_pretrained(cfg.codec).state_dict())
            else:
                log.warning("no --codec given: training on an untrained codec's latents (tests only)")
        model.codec.requires_grad_(False)
        if self.adapts_backbone:
            model.config.adapter = dataclasses.replace(model.config.adapter, rank=model.config.adapter.rank
                                                       or cfg.lora_rank)
            model.add_adapter()
        else:
            model.backbone.requires_grad_(False)
        self.model = model.to(device)
        self._build_data(model)
        return {"model": self.model}

    def _build_data(self, model: MichiModel) -> None:
        from ..data.dataset import FrameDataset, TextDataset

        cfg, codec, tok = self.config, model.config.codec, model.tokenizer
        kinds = self.kinds
        self.spoken = FrameDataset(cfg.data, tok, codec, "train", kinds, "model", cfg.max_frames, cfg.seed)
        self.heard = (FrameDataset(cfg.data, tok, codec, "train", kinds, "user", cfg.max_frames, cfg.seed)
                      if self.hears_user else None)
        self.valid = FrameDataset(cfg.data, tok, codec, "valid", kinds, "model", cfg.max_frames, cfg.seed)
        self.texts = TextDataset(cfg.data, tok, "train") if self.mixes_text else None
        if len(self.spoken) == 0:
            raise SystemExit(f"{cfg.data}: no aligned {'/'.join(kinds)} items in the train split")
        log.info("%s stage: %d train items, %d valid", self.mode, len(self.spoken), len(self.valid))

    def optimizers(self, modules):
        params = [p for p in modules["model"].parameters() if p.requires_grad]
        return {"model": torch.optim.AdamW(params, self.config.lr, weight_decay=0.01)}

    # -- data ---------------------------------------------------------------------------------------------------
    def batch(self, step: int, micro: int, rank: int, world: int):
        from ..data.dataset import collate_frames, collate_text

        cfg = self.config
        g = step_generator(cfg.seed, step, micro, rank)
        per_rank = max(1, cfg.batch_size // (world * cfg.grad_accum))
        pad = self.model.tokenizer.pad_id
        if self.texts is not None and len(self.texts) and (step + 1) % (cfg.text_every + 1) == 0:
            rows = torch.randint(0, len(self.texts), (per_rank,), generator=g).tolist()
            return "text", collate_text([self.texts[i] for i in rows], pad)
        samples = []
        for _ in range(per_rank):
            use_user = self.heard is not None and float(torch.rand((), generator=g)) < cfg.user_share
            source = self.heard if use_user else self.spoken
            samples.append(source[int(torch.randint(0, len(source), (), generator=g))])
        return "frames", collate_frames(samples, pad, self.model.config.codec.frame_size)

    # -- training -------------------------------------------------------------------------------------------
    def train_step(self, batch, step: int, ctx) -> dict[str, float]:
        kind, data = batch
        model = ctx.trainer.modules["model"]
        g = step_generator(self.config.seed + 1, step, ctx.micro)
        with ctx.autocast():
            if kind == "text":
                losses = model(TextBatch(data["tokens"], data["mask"]).to(self.device))
                logs = {"text_lm": float(losses.total)}
            else:
                losses = model(batch_to_michi(data, self.model, self.device),
                               generator=g if self.device.type == "cpu" else None)
                logs = losses.as_dict()
        ctx.backward(losses.total, ["model"])
        ctx.step("model")
        return logs

    @torch.no_grad()
    def evaluate(self, step: int) -> dict[str, float]:
        from ..data.dataset import collate_frames

        if len(self.valid) == 0:
            return {}
        totals: dict[str, float] = {}
        n = min(self.config.eval_batches, len(self.valid))
        for i in range(n):
            data = collate_frames([self.valid[i]], self.model.tokenizer.pad_id, self.model.config.codec.frame_size)
            losses = self.model(batch_to_michi(data, self.model, self.device),
                                generator=torch.Generator(device=self.device).manual_seed(i))
            for k, v in losses.as_dict().items():
                totals[k] = totals.get(k, 0.0) + v / n
        return totals

    def export(self, directory: Path) -> None:
        self.model.save_pretrained(directory)
        log.info("exported the %s-stage model to %s", self.mode, directory)


class SpeechStage(FrameStage):
    """Listen + speak heads on a frozen backbone; utterances spoken and heard."""

    mode = StageMode.SPEECH
    adapts_backbone = False


class JointStage(FrameStage):
    """End to end through LoRA, text-only batches mixed in to keep the backbone's language."""

    mode = StageMode.JOINT
    mixes_text = True


class DuplexStage(FrameStage):
    """End to end through LoRA on two-channel dialogues: listen while speaking, yield, backchannel."""

    mode = StageMode.DUPLEX
    kinds = ("dialogue",)
    hears_user = False


STAGES: dict[StageMode, type[FrameStage]] = {stage.mode: stage for stage in (SpeechStage, JointStage, DuplexStage)}


def frame_stage(config: SpeechStageConfig) -> FrameStage:
    """The stage class for `config.mode` (a StageMode or its string from a saved config)."""
    try:
        mode = StageMode(config.mode)
    except ValueError:
        raise SystemExit(f"unknown stage mode {config.mode!r}: one of {', '.join(StageMode)}") from None
    config.mode = mode
    return STAGES[mode](config)


def add_speech_commands(subparsers) -> None:
    from ..trainer import add_config_arguments

    for mode, stage in STAGES.items():
        p = subparsers.add_parser(str(mode), help=f"train the {mode} stage: {stage.__doc__.strip().rstrip('.')}")
        add_config_arguments(p, SpeechStageConfig)
        p.set_defaults(func=run_speech_command, stage_mode=mode)


def run_speech_command(args) -> int:
    from ..trainer import Trainer, config_from_arguments

    args.mode = args.stage_mode
    config = config_from_arguments(SpeechStageConfig, args)
    if config.out_dir == SpeechStageConfig.out_dir:
        config.out_dir = f"runs/{config.mode}"
    Trainer(frame_stage(config)).fit(resume=args.resume)
    return 0
