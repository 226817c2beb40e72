"""`michi-train reproduce`: the whole recipe for a preset in one command.

    michi-train reproduce --preset tiny --out repro                     # minutes, on 2 CPU cores
    michi-train reproduce --preset small --out repro --hours 20 --budget-minutes 900

data (synth, align, dialogues, text-only) -> codec -> speech -> joint -> duplex -> eval, calling each
stage's own code in this process. What it leaves in --out:

    corpus/                 the corpus (manifest.sqlite3 + audio)
    runs/<stage>/           each stage's checkpoints, TensorBoard logs and export
    checkpoint/             the final model, codec inside: `michi --checkpoint`, `load_model(...)`
    eval/codec/, eval/model/   eval.json + EVAL.md (+ loss curves, the scored audio)
    reproduce.json          the plan (step counts), each stage's loss trend and timings

Running the same command again resumes: the data builders skip what exists and every stage goes on
from its latest checkpoint, with the step counts planned the first time (reproduce.json's "plan").

Step counts are the preset's (`Recipe.steps`), those given with `--steps STAGE=N`, or derived from
`--budget-minutes`: the data is built first, `EVAL_SHARE` of the budget is kept for the evaluation,
and what is left is shared among the stages in `Recipe.budget_shares` (a stage that finishes early
leaves its time to the next). A stage's step count is its time divided by its measured step time:
`CALIBRATION_STEPS` steps of a throwaway copy of the stage.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.data.align import DEFAULT_MAX_WER

log = logging.getLogger(__name__)

TRAIN_STAGES = ("codec", "speech", "joint", "duplex")
LOSS_KEYS = {"codec": "mel", "speech": "total", "joint": "total", "duplex": "total"}  # the loss that must fall
EVAL_SHARE = 0.1  # of --budget-minutes, kept for the evaluation
CALIBRATION_STEPS = 3  # timed steps of a stage to derive its step count (the first is a warm-up)
MIN_STEPS = 10  # a stage trains at least this long, whatever the budget says


@dataclass
class Recipe:
    """What `reproduce` builds and trains for one model preset."""

    preset: str  # the model preset (michi_core.model.config)
    hours: float  # synthesized speech in the corpus (`data synth --hours`)
    voices: tuple[str, ...] | None  # synth voices (None: every piper and espeak voice)
    dialogue_voices: tuple[str, ...] | None  # the user's voices in dialogues (None: every espeak voice)
    dialogues_per_hour: float  # two-channel dialogues per hour of synth speech ...
    min_dialogues: int  # ... but at least this many (index 6 is the first held-out one)
    texts_per_hour: float  # text-only passages per hour of synth speech ...
    min_texts: int
    whisper: str  # ASR for alignment and evaluation
    dialogue_max_wer: float  # a dialogue whose turns ASR hears worse than this is dropped (and re-voiced first)
    eval_limit: int  # held-out items per evaluation measure
    steps: dict[str, int]  # per stage, when neither --steps nor --budget-minutes says otherwise
    real_speech: str | None = None  # human recordings the codec eval also scores (`eval codec --real`)
    codec: dict[str, Any] = field(default_factory=dict)  # CodecStageConfig fields
    speech: dict[str, Any] = field(default_factory=dict)  # SpeechStageConfig fields (speech, joint, duplex)
    codec_kl_warmup: float = 0.2  # the codec's KL weight ramp, as a share of its steps
    warmup: float = 0.02  # learning-rate warm-up, every stage
    budget_shares: dict[str, float] = field(
        default_factory=lambda: {"codec": 0.4, "speech": 0.25, "joint": 0.2, "duplex": 0.15})

    def dialogues(self, hours: float) -> int:
        return max(self.min_dialogues, round(self.dialogues_per_hour * hours))

    def texts(self, hours: float) -> int:
        return max(self.min_texts, round(self.texts_per_hour * hours))


RECIPES = {
    # CI and a first look: ~2.5 min of speech, 7 dialogues, a few dozen steps per stage; every
    # artifact is real and loads, the numbers only show that each stage learns.
    "tiny": Recipe(
        preset="tiny", hours=0.04, voices=("piper", "espeak:en-us"), dialogue_voices=("espeak:en-us",),
        dialogues_per_hour=150, min_dialogues=7, texts_per_hour=2000, min_texts=40, whisper="tiny.en",
        dialogue_max_wer=0.5,  # tiny.en often mishears espeak: keep the few held-out dialogues (timing is exact)
        eval_limit=3, steps={"codec": 40, "speech": 25, "joint": 10, "duplex": 10},
        codec={"batch_size": 4, "crop_frames": 4, "lr": 3e-3, "eval_every": 0,
               "save_every": 1000, "log_every": 1, "eval_clips": 4},
        speech={"batch_size": 4, "max_frames": 24, "lr": 3e-3, "lora_rank": 4, "eval_every": 0, "save_every": 1000,
                "log_every": 1, "eval_batches": 2},
        codec_kl_warmup=0.5, warmup=0.1),
    # The embedded default's recipe: SmolLM2-135M backbone; give it hours of speech and a GPU budget.
    "small": Recipe(
        preset="small", hours=1.0, voices=None, dialogue_voices=None, dialogues_per_hour=150, min_dialogues=20,
        texts_per_hour=2000, min_texts=200, whisper="base", dialogue_max_wer=DEFAULT_MAX_WER, eval_limit=50,
        steps={"codec": 3_000, "speech": 10_000, "joint": 4_000, "duplex": 3_000},
        codec={"batch_size": 16, "crop_frames": 24, "lr": 1e-3},
        speech={"batch_size": 8, "max_frames": 64, "lr": 3e-4, "lora_rank": 16}, real_speech="arctic"),
}


# -- the pieces -----------------------------------------------------------------------------------------------
def build_corpus(corpus: Path, recipe: Recipe, hours: float, workers: int, seed: int, whisper: str) -> dict:
    """synth -> align -> dialogues -> text-only; each builder resumes where it stopped."""
    from training.data.align import build_alignment
    from training.data.dialogues import DialogueOptions, build_dialogues
    from training.data.synth import build_synth
    from training.data.text_only import build_text_only

    voices = list(recipe.voices) if recipe.voices else None
    dialogue_voices = list(recipe.dialogue_voices) if recipe.dialogue_voices else None
    return {
        "synth": build_synth(corpus, hours, voices=voices, workers=workers, seed=seed),
        "align": build_alignment(corpus, whisper=whisper, workers=workers),
        "dialogues": build_dialogues(corpus, recipe.dialogues(hours), user_voices=dialogue_voices, workers=workers,
                                     seed=seed, whisper=whisper,
                                     options=DialogueOptions(max_wer=recipe.dialogue_max_wer)),
        "text": build_text_only(corpus, recipe.texts(hours), seed=seed),
    }


def stage_config(name: str, recipe: Recipe, out: Path, steps: int, seed: int, device: str):
    """The stage's config for `steps` optimizer steps, schedule points scaled to that length."""
    from training.stages.codec import CodecStageConfig
    from training.stages.speech import SpeechStageConfig

    runs, corpus = out / "runs", str(out / "corpus")
    common = {"out_dir": str(runs / name), "preset": recipe.preset, "data": corpus, "steps": steps, "seed": seed,
              "device": device, "warmup_steps": max(1, round(recipe.warmup * steps))}
    if name == "codec":
        return CodecStageConfig(**common, **recipe.codec, kl_warmup_steps=max(1, round(recipe.codec_kl_warmup * steps)))
    previous = {"speech": "", "joint": "speech", "duplex": "joint"}[name]
    return SpeechStageConfig(**common, **recipe.speech, mode=name, codec=str(runs / "codec" / "export"),
                             init=str(runs / previous / "export") if previous else "")


def make_stage(config):
    from training.stages.codec import CodecStage, CodecStageConfig
    from training.stages.speech import frame_stage

    return CodecStage(config) if isinstance(config, CodecStageConfig) else frame_stage(config)


def measure_step_seconds(config) -> float:
    """Seconds per optimizer step of a stage, timed on a throwaway copy writing to a temporary folder
    (the real run stays exactly what an uninterrupted run of its step count is)."""
    from training.trainer import StepContext, Trainer

    with tempfile.TemporaryDirectory() as tmp:
        probe = dataclasses.replace(config, out_dir=tmp)
        stage = make_stage(probe)
        trainer = Trainer(stage)
        ctx = StepContext(trainer)
        seconds = []
        for step in range(CALIBRATION_STEPS):
            started = time.perf_counter()
            for micro in range(probe.grad_accum):
                ctx.micro = micro
                stage.train_step(stage.batch(step, micro, 0, 1), step, ctx)
            seconds.append(time.perf_counter() - started)
    return statistics.median(seconds[1:])


def loss_trend(history: list[dict[str, float]], key: str) -> dict[str, float | int]:
    """The logged `key` at the start and at the end of training: means over the first and the last
    quarter of its values (single steps are noisy)."""
    values = [entry[key] for entry in history if key in entry]
    assert values, f"the stage logged no {key!r}"
    k = max(1, len(values) // 4)
    return {"first": statistics.fmean(values[:k]), "last": statistics.fmean(values[-k:]), "logged": len(values)}


def train_stage(config, loss_key: str) -> dict[str, Any]:
    from training.trainer import Trainer

    started = time.perf_counter()
    trainer = Trainer(make_stage(config))
    history = trainer.fit(resume=True)  # a re-run goes on from the latest checkpoint
    return {"steps": config.steps, "seconds": time.perf_counter() - started, "loss": loss_key,
            **loss_trend(history, loss_key), "export": str(Path(config.out_dir) / "export")}


# -- the whole recipe ------------------------------------------------------------------------------------------
def reproduce(preset: str, out: str | Path, budget_minutes: float | None = None, hours: float | None = None,
              steps: dict[str, int] | None = None, workers: int = 1, seed: int = 0, device: str = "auto",
              whisper: str | None = None, eval_limit: int | None = None) -> dict[str, Any]:
    """Run the recipe; returns (and keeps writing, stage by stage) the content of reproduce.json."""
    import torch

    from training.eval.commands import run_codec_eval, run_model_eval

    started = time.monotonic()
    deadline = started + 60 * budget_minutes if budget_minutes else None
    recipe = RECIPES[preset]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record_path = out / "reproduce.json"
    previous = json.loads(record_path.read_text()) if record_path.is_file() else {}
    hours = hours if hours is not None else recipe.hours
    whisper = whisper or recipe.whisper
    eval_device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    record: dict[str, Any] = {"preset": preset, "hours": hours, "budget_minutes": budget_minutes, "seed": seed,
                              "device": eval_device, "whisper": whisper, "recipe": dataclasses.asdict(recipe),
                              "stages": {}, "seconds": {}}

    def save() -> None:
        record["seconds"]["total"] = time.monotonic() - started
        record_path.write_text(json.dumps(record, indent=2, default=float) + "\n")

    phase = time.monotonic()
    record["data"] = build_corpus(out / "corpus", recipe, hours, workers, seed, whisper)
    record["seconds"]["data"] = time.monotonic() - phase
    save()

    record["plan"] = {}
    for k, name in enumerate(TRAIN_STAGES):
        if (steps or {}).get(name):
            count = steps[name]
        elif name in previous.get("plan", {}):  # a re-run keeps the step counts it planned
            count = previous["plan"][name]
        elif deadline is not None:
            count = budget_steps(name, recipe, out, seed, device, deadline, budget_minutes, TRAIN_STAGES[k:])
        else:
            count = recipe.steps[name]
        record["plan"][name] = count
        save()
        log.info("reproduce: %s stage, %d steps", name, count)
        config = stage_config(name, recipe, out, count, seed, device)
        record["stages"][name] = train_stage(config, LOSS_KEYS[name])
        save()

    checkpoint = out / "checkpoint"
    shutil.rmtree(checkpoint, ignore_errors=True)
    shutil.copytree(out / "runs" / "duplex" / "export", checkpoint)
    record["checkpoint"] = str(checkpoint)

    phase = time.monotonic()
    limit = eval_limit or recipe.eval_limit
    codec_report = run_codec_eval(checkpoint, out / "corpus", out / "eval" / "codec", limit, out / "runs" / "codec",
                                  whisper, eval_device, real=recipe.real_speech)
    model_report = run_model_eval(checkpoint, out / "corpus", out / "eval" / "model", limit, out / "runs", whisper,
                                  eval_device, seed)
    record["eval"] = {"codec": codec_report["metrics"], "model": model_report["metrics"]}
    record["seconds"]["eval"] = time.monotonic() - phase
    save()
    if deadline is not None and time.monotonic() > deadline:
        log.warning("reproduce took %.1f min, over the %.1f min budget", (time.monotonic() - started) / 60,
                    budget_minutes)
    return record


def budget_steps(name: str, recipe: Recipe, out: Path, seed: int, device: str, deadline: float,
                 budget_minutes: float, remaining: tuple[str, ...]) -> int:
    """This stage's share of the time left (less the evaluation's), in steps of its measured length."""
    left = deadline - time.monotonic() - EVAL_SHARE * 60 * budget_minutes
    share = recipe.budget_shares[name] / sum(recipe.budget_shares[s] for s in remaining)
    config = stage_config(name, recipe, out, recipe.steps[name], seed, device)
    seconds_per_step = measure_step_seconds(config)
    count = int(left * share / seconds_per_step)
    if count < MIN_STEPS:
        log.warning("%s: %.0f s of budget left for it is %d steps of %.2f s; training %d steps anyway", name,
                    left * share, count, seconds_per_step, MIN_STEPS)
    log.info("%s: %.0f s of the budget at %.3f s per step", name, left * share, seconds_per_step)
    return max(MIN_STEPS, count)


# -- command line ----------------------------------------------------------------------------------------------
def _stage_steps(text: str) -> tuple[str, int]:
    import argparse

    name, _, count = text.partition("=")
    if name not in TRAIN_STAGES or not count.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: give STAGE=N with STAGE one of {', '.join(TRAIN_STAGES)}")
    return name, int(count)


def add_reproduce_command(subparsers) -> None:
    from training.data.commands import DEFAULT_WORKERS

    p = subparsers.add_parser("reproduce", help="the whole recipe: data, codec, speech, joint, duplex, eval",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", required=True, choices=sorted(RECIPES))
    p.add_argument("--out", required=True, metavar="DIR", help="corpus, runs, checkpoint/ and eval/ go here")
    p.add_argument("--budget-minutes", type=float, metavar="M",
                   help="wall-clock budget for everything: the stages' step counts are derived from it")
    p.add_argument("--hours", type=float, metavar="H", help="hours of synthesized speech (default: the preset's)")
    p.add_argument("--steps", type=_stage_steps, action="append", default=[], metavar="STAGE=N",
                   help="a stage's step count (repeatable); wins over the budget and the preset")
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="data-building processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    p.add_argument("--whisper", help="ASR for alignment and evaluation (default: the preset's)")
    p.add_argument("--eval-limit", type=int, metavar="N", help="held-out items per evaluation measure")
    p.set_defaults(func=_run)


def _run(args) -> int:
    record = reproduce(args.preset, args.out, args.budget_minutes, args.hours, dict(args.steps), args.workers,
                       args.seed, args.device, args.whisper, args.eval_limit)
    for name, stage in record["stages"].items():
        print(f"{name:>7}: {stage['steps']} steps in {stage['seconds']:.0f} s, {stage['loss']} "
              f"{stage['first']:.4g} -> {stage['last']:.4g}")
    print(f"checkpoint: {record['checkpoint']} (michi --checkpoint {record['checkpoint']})")
    print(f"reports: {Path(args.out) / 'eval'}; everything in {Path(args.out) / 'reproduce.json'} "
          f"({record['seconds']['total'] / 60:.1f} min)")
    return 0
