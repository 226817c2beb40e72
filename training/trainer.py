"""The trainer every stage uses: config, loop, checkpoints with resume, logs, DDP.

A *stage* (codec, speech, joint, duplex) says what to build and how one step trains; this file
does the rest the same way for all of them:

- config: a dataclass per stage (fields with defaults), overridable from the command line
  (`--lr 1e-4`) or from a JSON file (`--config stage.json`);
- determinism: each step's batch is a pure function of (seed, step), so a run resumed from a
  checkpoint sees exactly the batches an uninterrupted run would;
- checkpoints: module weights as safetensors, optimizer/scheduler state loaded with
  `torch.load(weights_only=True)` (no arbitrary pickle), RNG state, step; `--resume` picks the latest;
- logs: a tqdm progress bar with ETA, TensorBoard scalars, periodic evaluation;
- precision: bf16 autocast on CUDA, fp32 on CPU; gradient accumulation; gradient clipping;
- scale-out: under `torchrun` (WORLD_SIZE > 1) modules are wrapped in DDP and each rank draws
  its own share of every batch; nothing else changes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import shutil
import time
import typing
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

log = logging.getLogger(__name__)


class Precision(StrEnum):
    """How the training step computes. A str enum: stage configs saved as JSON hold the plain
    strings, and those keep loading."""

    AUTO = "auto"  # bf16 autocast on CUDA, fp32 on CPU
    FP32 = "fp32"
    BF16 = "bf16"  # autocast: matmuls in bf16, weights and optimizer state stay fp32


# Fields older stage configs may hold that mean nothing now; read and ignored. num_workers: no
# DataLoader reads the data; each stage builds a step's batch itself, in the training process, as
# a pure function of seed and step (which is what makes a resumed run see the same batches).
RETIRED_FIELDS = frozenset({"num_workers"})


@dataclass
class TrainConfig:
    out_dir: str = "runs/stage"  # checkpoints, TensorBoard logs and the exported artifact
    steps: int = 10_000  # optimizer steps
    batch_size: int = 8  # per optimizer step, summed over ranks and accumulation
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 2e-4
    warmup_steps: int = 200  # linear warm-up, then cosine decay to 10 %
    grad_clip: float = 10.0
    eval_every: int = 500
    save_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    seed: int = 0
    precision: Precision = Precision.AUTO
    max_minutes: float = 0.0  # stop and save after this much wall time (0: no limit)
    device: str = "auto"  # auto: cuda if available

    def __post_init__(self) -> None:
        if self.precision not in set(Precision):
            raise ValueError(f"unknown precision {self.precision!r}: one of {', '.join(Precision)}")
        self.precision = Precision(self.precision)  # a string from JSON or the command line: the member


class Stage(typing.Protocol):
    """What a training stage provides. The trainer calls these in this order."""

    name: str
    config: TrainConfig

    def build(self, device: torch.device) -> dict[str, nn.Module]: ...

    def optimizers(self, modules: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]: ...

    def batch(self, step: int, micro: int, rank: int, world: int) -> object: ...

    def train_step(self, batch: object, step: int, ctx: StepContext) -> dict[str, float]: ...

    def evaluate(self, step: int) -> dict[str, float]: ...

    def export(self, directory: Path) -> None: ...


class StepContext:
    """Backward and optimizer steps with accumulation, clipping, autocast and DDP no_sync."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self.micro = 0

    @property
    def last_micro(self) -> bool:
        return self.micro == self.trainer.config.grad_accum - 1

    def autocast(self):
        t = self.trainer
        if t.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=t.device.type, dtype=t.autocast_dtype)

    def backward(self, loss: torch.Tensor, module_names: typing.Iterable[str] = ()) -> None:
        """Backward of loss / grad_accum; gradients sync across ranks only on the last micro-batch."""
        syncs = contextlib.ExitStack()
        if not self.last_micro:
            for name in module_names:
                module = self.trainer.modules[name]
                if hasattr(module, "no_sync"):
                    syncs.enter_context(module.no_sync())
        with syncs:
            (loss / self.trainer.config.grad_accum).backward()

    def step(self, optimizer_name: str) -> float | None:
        """Clip, step and zero one optimizer on the last micro-batch; returns the grad norm."""
        if not self.last_micro:
            return None
        t = self.trainer
        opt = t.optimizers[optimizer_name]
        params = [p for group in opt.param_groups for p in group["params"] if p.grad is not None]
        norm = float(torch.nn.utils.clip_grad_norm_(params, t.config.grad_clip)) if params else 0.0
        opt.step()
        opt.zero_grad(set_to_none=True)
        t.schedulers[optimizer_name].step()
        return norm


def lr_lambda(config: TrainConfig):
    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return factor


class Trainer:
    def __init__(self, stage: Stage):
        self.stage = stage
        self.config = stage.config
        self.rank, self.world = _init_distributed()
        self.device = _pick_device(self.config.device, self.rank)
        precision = self.config.precision
        if precision is Precision.AUTO:
            precision = Precision.BF16 if self.device.type == "cuda" else Precision.FP32
        self.autocast_dtype = torch.bfloat16 if precision is Precision.BF16 else None
        self.out_dir = Path(self.config.out_dir)
        self.step = 0
        seed_everything(self.config.seed + self.rank)
        self.modules = stage.build(self.device)
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.modules = {name: DDP(m, device_ids=[self.device.index] if self.device.type == "cuda" else None)
                            if any(p.requires_grad for p in m.parameters()) else m
                            for name, m in self.modules.items()}
        self.optimizers = stage.optimizers(self.modules)
        self.schedulers = {name: torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(self.config))
                           for name, opt in self.optimizers.items()}
        self.writer = None
        self.history: list[dict[str, float]] = []

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def unwrapped(self, name: str) -> nn.Module:
        module = self.modules[name]
        return module.module if hasattr(module, "module") else module

    # -- checkpoints ----------------------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / "checkpoints"

    def latest_checkpoint(self) -> Path | None:
        marker = self.checkpoint_dir / "latest.txt"
        if not marker.is_file():
            return None
        path = self.checkpoint_dir / marker.read_text().strip()
        return path if path.is_dir() else None

    def save_checkpoint(self) -> Path:
        directory = self.checkpoint_dir / f"step_{self.step:08d}"
        tmp = self.checkpoint_dir / f".tmp_step_{self.step:08d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name in self.modules:
            state = {k: v.detach().contiguous().cpu() for k, v in self.unwrapped(name).state_dict().items()}
            save_file(_untie(state), str(tmp / f"{name}.safetensors"))
        torch.save({"optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
                    "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()}}, tmp / "optim.pt")
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else torch.get_rng_state()
        save_file(rng, str(tmp / "rng.safetensors"))
        state = {"step": self.step, "stage": self.stage.name, "config": dataclasses.asdict(self.config),
                 "python_random": _jsonable(random.getstate()), "numpy_random": _jsonable(np.random.get_state()),
                 "history": self.history[-1000:]}
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1))
        shutil.rmtree(directory, ignore_errors=True)
        os.replace(tmp, directory)  # a killed process never leaves a half-written checkpoint behind
        (self.checkpoint_dir / "latest.txt").write_text(directory.name)
        self._prune_checkpoints()
        return directory

    def _prune_checkpoints(self) -> None:
        kept = sorted(self.checkpoint_dir.glob("step_*"))
        for old in kept[: max(0, len(kept) - self.config.keep_checkpoints)]:
            shutil.rmtree(old, ignore_errors=True)

    def load_checkpoint(self, directory: Path) -> None:
        state = json.loads((directory / "trainer_state.json").read_text())
        if state["stage"] != self.stage.name:
            raise ValueError(f"{directory} is a {state['stage']!r} checkpoint, not {self.stage.name!r}")
        for name in self.modules:
            weights = load_file(str(directory / f"{name}.safetensors"))
            self.unwrapped(name).load_state_dict(weights, strict=False)
        optim = torch.load(directory / "optim.pt", map_location=self.device, weights_only=True)
        for name, opt in self.optimizers.items():
            opt.load_state_dict(optim["optimizers"][name])
        for name, sched in self.schedulers.items():
            sched.load_state_dict(optim["schedulers"][name])
        rng = load_file(str(directory / "rng.safetensors"))
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        random.setstate(_tuple(state["python_random"]))
        np_state = state["numpy_random"]
        np.random.set_state((np_state[0], np.array(np_state[1], dtype=np.uint32), *np_state[2:]))
        self.step = int(state["step"])
        self.history = state.get("history", [])
        log.info("resumed %s from %s at step %d", self.stage.name, directory, self.step)

    # -- the loop ------------------------------------------------------------------------------------------------
    def fit(self, resume: bool = False, stop_at: int | None = None) -> list[dict[str, float]]:
        """Train to config.steps (or stop early at `stop_at`, saving a checkpoint as an interruption would)."""
        cfg = self.config
        if resume:
            latest = self.latest_checkpoint()
            if latest is None:
                log.warning("--resume: no checkpoint in %s yet; starting from scratch", self.checkpoint_dir)
            else:
                self.load_checkpoint(latest)
        if self.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out_dir / "tensorboard"))
        from tqdm.auto import tqdm

        started = time.monotonic()
        ctx = StepContext(self)
        bar = tqdm(total=cfg.steps, initial=self.step, desc=self.stage.name, disable=not self.is_main,
                   dynamic_ncols=True)
        for module in self.modules.values():
            module.train()
        while self.step < cfg.steps:
            logs: dict[str, float] = {}
            for micro in range(cfg.grad_accum):
                ctx.micro = micro
                batch = self.stage.batch(self.step, micro, self.rank, self.world)
                for k, v in self.stage.train_step(batch, self.step, ctx).items():
                    logs[k] = logs.get(k, 0.0) + v / cfg.grad_accum
            self.step += 1
            logs["lr"] = next(iter(self.schedulers.values())).get_last_lr()[0]
            self.history.append({"step": self.step, **logs})
            bar.update(1)
            if self.is_main and (self.step % cfg.log_every == 0 or self.step == cfg.steps):
                bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items() if k != "lr"}, refresh=False)
                for k, v in logs.items():
                    self.writer.add_scalar(f"train/{k}", v, self.step)
            if cfg.eval_every and self.step % cfg.eval_every == 0:
                self._evaluate()
            out_of_time = (cfg.max_minutes and (time.monotonic() - started) > 60 * cfg.max_minutes) or (
                stop_at is not None and self.step >= stop_at)
            if self.is_main and (self.step % cfg.save_every == 0 or self.step == cfg.steps or out_of_time):
                self.save_checkpoint()
            if out_of_time:
                log.info("stopping at step %d (time budget or stop_at)", self.step)
                break
        bar.close()
        if self.step < cfg.steps:
            return self.history
        if self.is_main:
            if not (cfg.eval_every and self.step % cfg.eval_every == 0):
                self._evaluate()
            self.stage.export(self.out_dir / "export")
            self.writer.close()
        return self.history

    def _evaluate(self) -> None:
        if not self.is_main:
            return
        for module in self.modules.values():
            module.eval()
        metrics = self.stage.evaluate(self.step)
        for module in self.modules.values():
            module.train()
        for k, v in metrics.items():
            self.writer.add_scalar(f"eval/{k}", v, self.step)
        if metrics:
            log.info("step %d eval: %s", self.step, ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
            self.history.append({"step": self.step, **{f"eval_{k}": v for k, v in metrics.items()}})


# -- helpers ----------------------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def step_generator(seed: int, step: int, micro: int = 0, rank: int = 0) -> torch.Generator:
    """The RNG of one micro-batch: a pure function of where it is in training (resume-exact)."""
    return torch.Generator().manual_seed(hash((seed, step, micro, rank)) % 2**62)


def _init_distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def _pick_device(name: str, rank: int) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", rank))
            torch.cuda.set_device(local)
            return torch.device("cuda", local)
        return torch.device("cpu")
    return torch.device(name)


def _untie(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses shared storage: store each tensor on its own."""
    seen: dict[int, str] = {}
    out = {}
    for k, v in state.items():
        ptr = v.data_ptr()
        out[k] = v.clone() if ptr in seen else v
        seen.setdefault(ptr, k)
    return out


def _jsonable(value):
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _tuple(value):
    return tuple(_tuple(v) for v in value) if isinstance(value, list) else value


# -- command line -----------------------------------------------------------------------------------------------
def add_config_arguments(parser: argparse.ArgumentParser, config_class: type) -> None:
    """One --option per dataclass field (same name, dashes), plus --config FILE.json."""
    parser.add_argument("--config", help="JSON file of field values (command-line options win)")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in out_dir")
    for f in dataclasses.fields(config_class):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kind = type(default)
        option = "--" + f.name.replace("_", "-")
        if kind is bool:
            parser.add_argument(option, type=lambda s: s.lower() in ("1", "true", "yes"), default=None,
                                metavar="BOOL")
        elif isinstance(default, StrEnum):
            parser.add_argument(option, type=kind, choices=list(kind), default=None)
        elif kind in (int, float, str):
            parser.add_argument(option, type=kind, default=None)
        elif default is None:
            parser.add_argument(option, default=None)


def config_from_arguments(config_class: type, args: argparse.Namespace):
    values = {}
    if getattr(args, "config", None):
        values.update(json.loads(Path(args.config).read_text()))
        for name in RETIRED_FIELDS & set(values):
            log.info("%s: ignoring %s (no longer a setting)", args.config, name)
            del values[name]
    for f in dataclasses.fields(config_class):
        value = getattr(args, f.name, None)
        if value is not None:
            values[f.name] = value
    unknown = set(values) - {f.name for f in dataclasses.fields(config_class)}
    if unknown:
        raise SystemExit(f"unknown {config_class.__name__} fields: {sorted(unknown)}")
    return config_class(**values)
