"""An evaluation's outputs: `eval.json` (everything), `EVAL.md` (the headline table, what could not
be measured and why, loss curves) and one PNG of loss curves per TensorBoard log of a training run.

A report is a dict with at least `metrics` (nested dicts of numbers, None where a metric could not
be computed) and `unavailable` (dotted metric name -> reason).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def lookup(metrics: dict[str, Any], dotted: str) -> Any:
    """metrics["wer"]["original"] for "wer.original"; None where any part is missing or None."""
    value: Any = metrics
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def reason_for(unavailable: dict[str, str], dotted: str) -> str | None:
    """The reason recorded for this metric or for the group it belongs to ("dnsmos" for "dnsmos.x.y")."""
    parts = dotted.split(".")
    for k in range(len(parts), 0, -1):
        reason = unavailable.get(".".join(parts[:k]))
        if reason:
            return reason
    return None


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def markdown(report: dict[str, Any], title: str, labels: dict[str, str], summary: str,
             curves: list[Path]) -> str:
    lines = [f"# {title}", "", summary, "", "| metric | value |", "| --- | --- |"]
    for key, label in labels.items():
        value = lookup(report["metrics"], key)
        shown = format_value(value) if value is not None else f"n/a ({reason_for(report['unavailable'], key)})"
        lines.append(f"| {label} | {shown} |")
    if report["unavailable"]:
        lines += ["", "## Not measured", ""]
        lines += [f"- `{key}`: {reason}" for key, reason in sorted(report["unavailable"].items())]
    if curves:
        lines += ["", "## Loss curves", ""]
        lines += [f"![{path.stem}]({path.name})" for path in curves]
    return "\n".join(lines) + "\n"


def write_report(out_dir: str | Path, report: dict[str, Any], title: str, labels: dict[str, str],
                 summary: str, run_dir: str | Path | None = None) -> Path:
    """Write eval.json and EVAL.md (plus loss-curve PNGs when run_dir is given) into out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = loss_curves(Path(run_dir), out_dir) if run_dir else []
    report["loss_curves"] = [path.name for path in curves]
    (out_dir / "eval.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    (out_dir / "EVAL.md").write_text(markdown(report, title, labels, summary, curves))
    return out_dir / "eval.json"


def loss_curves(run_dir: Path, out_dir: Path) -> list[Path]:
    """One PNG per TensorBoard log under run_dir (a stage's out_dir, or a folder of several):
    every scalar but the learning rate, each in its own panel (losses differ in scale)."""
    from matplotlib.figure import Figure
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = []
    for log_dir in sorted({path.parent for path in run_dir.rglob("events.out.tfevents.*")}):
        events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})  # 0: keep every point
        events.Reload()
        tags = [tag for tag in events.Tags()["scalars"] if not tag.endswith("/lr")]
        if not tags:
            continue
        run = log_dir.parent if log_dir.name == "tensorboard" else log_dir
        name = "_".join(run.relative_to(run_dir).parts) or run.name
        cols = min(4, len(tags))
        rows = math.ceil(len(tags) / cols)
        figure = Figure(figsize=(3.2 * cols, 2.4 * rows), layout="constrained")
        for k, tag in enumerate(tags):
            points = events.Scalars(tag)
            axes = figure.add_subplot(rows, cols, k + 1)
            axes.plot([p.step for p in points], [p.value for p in points], marker="." if len(points) < 30 else None)
            axes.set_title(tag, fontsize=9)
            axes.set_xlabel("step", fontsize=8)
            axes.tick_params(labelsize=7)
        figure.suptitle(f"{name}: training curves")
        path = out_dir / f"loss_{name}.png"
        figure.savefig(path, dpi=80)
        pngs.append(path)
    return pngs
