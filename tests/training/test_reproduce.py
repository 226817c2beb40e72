"""`michi-train reproduce --preset tiny` end to end, as a user runs it: every stage learns, every
artifact loads and runs in the engine and the app's CLI, and both evaluations report real numbers."""

import json
import math
import time

import numpy as np
import pytest
import soundfile as sf
import torch

from michi_core.model.codec import Codec
from michi_core.model.model import load_model
from michi_core.session.engine import DuplexSession, SamplingSettings
from michi_core.stores.voices import speak
from training.eval.codec_eval import CODEC_LABELS
from training.eval.model_eval import MODEL_LABELS
from training.eval.report import lookup, reason_for
from training.reproduce import RECIPES, TRAIN_STAGES, budget_steps, measure_step_seconds, stage_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory, run_cli):
    out = tmp_path_factory.mktemp("reproduce")
    run_cli("reproduce", "--preset", "tiny", "--out", str(out), timeout=900)
    return out, json.loads((out / "reproduce.json").read_text())


def test_every_stage_lowers_its_loss(reproduced):
    _, record = reproduced
    assert list(record["stages"]) == list(TRAIN_STAGES)
    for name, stage in record["stages"].items():
        assert stage["steps"] == RECIPES["tiny"].steps[name] and stage["logged"] >= 8
        assert stage["last"] < stage["first"], f"{name}: {stage['loss']} {stage['first']:.4g} -> {stage['last']:.4g}"


def test_the_corpus_has_every_kind_of_data_the_stages_need(reproduced):
    _, record = reproduced
    data = record["data"]
    assert data["synth"]["errors"] == 0 and data["align"]["aligned"] >= 15
    assert data["dialogues"]["kept"] >= 6 and data["text"]["new_rows"] + data["text"]["split_conflicts_dropped"] > 0


def test_the_checkpoint_loads_steps_speaks_and_holds_the_trained_codec(reproduced, tmp_path):
    out, _ = reproduced
    model = load_model(out / "checkpoint")
    codec = Codec.from_pretrained(out / "runs" / "codec" / "export")
    for key, value in codec.state_dict().items():
        assert torch.equal(value, model.codec.state_dict()[key]), f"codec.{key} is not the codec stage's"
    assert model.config.adapter.rank == RECIPES["tiny"].speech["lora_rank"]
    fs = model.config.codec.frame_size
    session = DuplexSession(model, SamplingSettings(seed=0))
    session.prefill_text("You are Michi.")
    results = [session.step(np.zeros(fs, np.float32)) for _ in range(6)]
    assert all(r.audio.shape == (fs,) and np.isfinite(r.audio).all() for r in results)
    audio = speak(model, "hello", settings=SamplingSettings(seed=0), max_seconds=3)
    assert len(audio) >= fs and len(audio) % fs == 0 and np.isfinite(audio).all()


def test_michi_chat_runs_the_checkpoint(reproduced, tmp_path):
    from app.cli import main

    out, _ = reproduced
    sf.write(tmp_path / "user.wav", np.zeros(24_000, np.float32), 24_000)
    assert main(["chat", "--checkpoint", str(out / "checkpoint"), "--say", "hello", "--input",
                 str(tmp_path / "user.wav"), "--output", str(tmp_path / "reply.wav"), "--seed", "0",
                 "--dtype", "fp32"]) == 0
    reply, rate = sf.read(tmp_path / "reply.wav")
    assert rate == 24_000 and len(reply) >= 24_000


def _leaves(tree, prefix=""):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _leaves(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1], tree


@pytest.mark.parametrize("kind, labels", [("codec", CODEC_LABELS), ("model", MODEL_LABELS)])
def test_the_eval_reports_have_every_metric_as_a_finite_number(reproduced, kind, labels):
    out, record = reproduced
    report = json.loads((out / "eval" / kind / "eval.json").read_text())
    assert report["metrics"] == record["eval"][kind]
    for key in labels:
        value = lookup(report["metrics"], key)
        assert value is not None or reason_for(report["unavailable"], key), f"{kind} eval: {key} missing, no reason"
    for key, value in _leaves(report["metrics"]):
        if value is None:
            assert reason_for(report["unavailable"], key), f"{kind} eval: {key} is null without a reason"
        else:
            assert isinstance(value, int | float) and math.isfinite(value), f"{kind} eval: {key} = {value!r}"
    measured = {"codec": ["wer.original", "wer.resynthesized", "stoi", "pesq_wb", "dnsmos.resynthesized.ovrl",
                          "mel_distance", "latents.kl"],
                "model": ["say.wer", "speaker_similarity.win_rate", "perplexity.adapted", "perplexity.original",
                          "duplex.model_voiced_during_user", "duplex.reference_latency_frames"]}[kind]
    for key in measured:
        assert lookup(report["metrics"], key) is not None, (
            f"{kind} eval: {key} was not measured: {report['unavailable']}")
    text = (out / "eval" / kind / "EVAL.md").read_text()
    assert all(label in text for label in labels.values())
    assert report["loss_curves"] and all((out / "eval" / kind / png).is_file() for png in report["loss_curves"])


def test_the_original_audio_is_intelligible_to_the_eval(reproduced):
    """The floor the resynthesis is measured against: Whisper understands the held-out originals."""
    _, record = reproduced
    assert record["eval"]["codec"]["wer"]["original"] < 0.35
    assert record["eval"]["model"]["duplex"]["reference_answered_turns"] == 1.0


def test_the_codec_eval_scores_real_recordings_apart(reproduced, tmp_path):
    """`eval codec --real DIR`: recordings in no corpus, each with its transcript, get their own WER
    (with the target) and quality numbers; the corpus numbers stay the corpus's."""
    from training.eval.commands import run_codec_eval
    from training.eval.heldout import held_out_rows

    out, _ = reproduced
    real = tmp_path / "real"
    real.mkdir()
    row = held_out_rows(out / "corpus", "utterance")[-1]
    sf.write(real / "speaker.wav", sf.read(row["audio_path"])[0], sf.info(row["audio_path"]).samplerate)
    (real / "speaker.txt").write_text(row["text"])
    report = run_codec_eval(out / "checkpoint", out / "corpus", tmp_path / "eval", limit=2, whisper="tiny.en",
                            dnsmos=False, keep_audio=False, real=real)
    metrics = report["metrics"]
    assert metrics["real"]["clips"] == 1 and report["real_items"][0]["id"] == "speaker"
    assert metrics["real"]["wer"]["original"] < 0.5 and metrics["real"]["stoi"] is not None
    assert metrics["wer"]["target"] == pytest.approx(1.5 * metrics["wer"]["original"] + 0.02)
    assert "real" not in report["unavailable"]
    assert "Real human speech in no corpus" in (tmp_path / "eval" / "EVAL.md").read_text()


def test_a_time_budget_becomes_step_counts_from_measured_steps(reproduced):
    out, _ = reproduced
    recipe = RECIPES["tiny"]
    before = sorted(p.name for p in (out / "runs" / "codec" / "checkpoints").iterdir())
    seconds = measure_step_seconds(stage_config("codec", recipe, out, 40, 0, "cpu"))
    assert 0 < seconds < 30
    checkpoints = out / "runs" / "codec" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == before, "timing touched the run"
    deadline = time.monotonic() + 600
    steps = budget_steps("speech", recipe, out, 0, "cpu", deadline, budget_minutes=10,
                            remaining=("speech", "joint", "duplex"))
    assert 50 < steps < 100_000, steps  # ~540 s left, 0.25 / 0.6 of it for speech, at well under a second a step


def test_a_longer_budget_buys_the_codec_more_steps(reproduced):
    out, _ = reproduced
    recipe = RECIPES["tiny"]
    short = budget_steps("codec", recipe, out, 0, "cpu", time.monotonic() + 60, budget_minutes=1,
                         remaining=TRAIN_STAGES)
    long = budget_steps("codec", recipe, out, 0, "cpu", time.monotonic() + 36_000, budget_minutes=600,
                        remaining=TRAIN_STAGES)
    assert 10 <= short < long

