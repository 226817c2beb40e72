"""`michi-train ship codec`: put a trained, evaluated codec where the app finds it.

    michi-train eval codec --checkpoint runs/codec/export --data corpus --run runs/codec --real arctic \\
        --out runs/eval/codec
    michi-train ship codec --checkpoint runs/codec/export --eval runs/eval/codec --run runs/codec

writes assets/codecs/<preset>/ (the preset is the one whose codec config the checkpoint has):

    config.json, model.safetensors   the codec, weights stored in float16 (half the size; loading puts
                                     them back into float32, and the resynthesis is checked to match)
    EVAL.md, eval.json, loss_*.png   its evaluation report
    TRAINING.json                    how it was trained: the stage config, steps, wall time, machine

`load_model` and `michi codec` use it for that preset whenever no full checkpoint is shipped.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch and the model load when the command runs, not when `michi-train` starts
    from michi_core.model.codec import Codec

SHIPPED_DTYPE = "float16"
MAX_SHIPPED_ERROR_DB = -30.0  # the float16 copy's resynthesis error, relative to the signal


class ShipError(RuntimeError):
    """A codec that cannot be shipped, with what to do about it."""


def preset_of(codec: Codec) -> str:
    from michi_core.model.config import PRESETS, preset

    for name in PRESETS:
        if preset(name).codec == codec.config:
            return name
    raise ShipError("the codec's config is no preset's: ship it as a checkpoint instead")


def storage_error_db(original: Codec, stored: Codec, seconds: float = 2.0, seed: int = 0) -> float:
    """Energy of (stored - original) resynthesis relative to the original's, in dB, on a harmonic test
    tone with a speech-like envelope (the streaming path is not needed: both run the same graph)."""
    import numpy as np
    import torch

    sr, fs = original.config.sample_rate, original.config.frame_size
    n = int(seconds * sr) // fs * fs
    t = np.arange(n) / sr
    rng = np.random.default_rng(seed)
    wave = sum(np.sin(2 * np.pi * 140 * k * t + rng.uniform(0, 6.3)) / k for k in range(1, 12))
    wave = (0.2 * wave * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    with torch.inference_mode():
        x = torch.from_numpy(wave)[None]
        a = original.decode(original.encode(x).mean)
        b = stored.decode(stored.encode(x).mean)
    return float(10 * torch.log10((b - a).pow(2).sum() / a.pow(2).sum().clamp_min(1e-12)))


def ship_codec(checkpoint: str | Path, eval_dir: str | Path, run_dir: str | Path | None = None,
               destination: str | Path | None = None) -> Path:
    """Copy a codec checkpoint (float16) with its evaluation into assets/codecs/<preset>/."""
    import torch

    from michi_core.model.codec import Codec
    from michi_core.model.config import CheckpointError
    from michi_core.model.model import SHIPPED_CODECS

    try:
        codec = Codec.from_pretrained(checkpoint)
    except CheckpointError as error:
        raise ShipError(str(error)) from None
    eval_dir = Path(eval_dir)
    report_path = eval_dir / "eval.json"
    if not report_path.is_file():
        raise ShipError(f"{eval_dir} has no eval.json: evaluate the codec first (`michi-train eval codec`)")
    report = json.loads(report_path.read_text())
    if report.get("evaluation") != "codec" or "checkpoint" not in report:
        raise ShipError(f"{report_path} is not a codec evaluation")
    evaluated_path = Path(report["checkpoint"])
    if not evaluated_path.exists():
        raise ShipError(f"{report_path} evaluated {evaluated_path}, which is not there (run ship from the folder "
                        f"the evaluation ran in, or evaluate again)")
    try:
        evaluated = Codec.from_pretrained(evaluated_path)
    except CheckpointError as error:
        raise ShipError(f"{report_path} evaluated {evaluated_path}: {error}") from None
    if any(not torch.equal(v, evaluated.state_dict()[k]) for k, v in codec.state_dict().items()):
        raise ShipError(f"{report_path} evaluates {evaluated_path}, not the weights in {checkpoint}")
    name = preset_of(codec)
    if destination is None and name == "tiny":
        raise ShipError("tiny is the test preset: its codec is not shipped (give --dest to write it elsewhere)")
    training = {"preset": name, "stored_dtype": SHIPPED_DTYPE, "machine": machine()}
    if run_dir is not None:
        summary = run_summary(Path(run_dir))
        if not summary:
            raise ShipError(f"--run {run_dir}: no training checkpoint there (checkpoints/latest.txt)")
        training.update(summary)
    destination = Path(destination) if destination else SHIPPED_CODECS / name
    staging = destination.with_name(destination.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        codec.save_pretrained(staging, dtype=getattr(torch, SHIPPED_DTYPE))
        stored = Codec.from_pretrained(staging)
        if not all(torch.isfinite(v).all() for v in stored.state_dict().values() if v.is_floating_point()):
            raise ShipError(f"a weight does not fit in {SHIPPED_DTYPE}")
        error_db = storage_error_db(codec, stored)
        if not math.isfinite(error_db) or error_db > MAX_SHIPPED_ERROR_DB:
            raise ShipError(f"{SHIPPED_DTYPE} storage changes the resynthesis by {error_db:.1f} dB "
                            f"(allowed: {MAX_SHIPPED_ERROR_DB})")
        for path in eval_dir.iterdir():
            if path.is_file() and (path.name in ("EVAL.md", "eval.json") or path.suffix == ".png"):
                shutil.copy2(path, staging / path.name)
        training["float16_resynthesis_error_db"] = error_db
        (staging / "TRAINING.json").write_text(json.dumps(training, indent=2) + "\n")
        # swap: the old codec stays in place until the new one is complete
        old = destination.with_name(destination.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if destination.exists():
            destination.rename(old)
        staging.rename(destination)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination


def run_summary(run_dir: Path) -> dict:
    """The stage config and step of a run's latest checkpoint (what the trainer saved)."""
    latest = run_dir / "checkpoints" / "latest.txt"
    step_dir = latest.read_text().strip() if latest.is_file() else "?"
    state_path = run_dir / "checkpoints" / step_dir / "trainer_state.json"
    if not state_path.is_file():
        return {}
    state = json.loads(state_path.read_text())
    config = {k: v for k, v in state["config"].items() if k not in ("out_dir", "data")}
    return {"stage": state["stage"], "steps": state["step"], "config": config}


def machine() -> dict:
    """The machine the codec was shipped from (michi bench's description of it)."""
    import torch

    from michi_core.session.bench import machine_info

    return machine_info(torch.device("cuda" if torch.cuda.is_available() else "cpu"))


def add_ship_command(subparsers) -> None:
    parser = subparsers.add_parser("ship", help="put a trained, evaluated artifact into assets/")
    kinds = parser.add_subparsers(dest="artifact", required=True, metavar="WHAT")
    p = kinds.add_parser("codec", help="a codec checkpoint and its eval report -> assets/codecs/<preset>/")
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="the codec stage's export")
    p.add_argument("--eval", required=True, dest="eval_dir", metavar="DIR", help="its `michi-train eval codec` --out")
    p.add_argument("--run", dest="run_dir", metavar="DIR", help="the codec stage's --out-dir (training record)")
    p.add_argument("--dest", metavar="DIR", help="default: assets/codecs/<preset>")
    p.set_defaults(func=_run)


def _run(args) -> int:
    try:
        destination = ship_codec(args.checkpoint, args.eval_dir, args.run_dir, args.dest)
    except ShipError as error:
        raise SystemExit(f"michi-train ship codec: {error}") from None
    size = sum(p.stat().st_size for p in destination.iterdir()) / 1e6
    print(f"shipped {destination} ({size:.1f} MB)")
    return 0
