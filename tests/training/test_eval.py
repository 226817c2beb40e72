"""`michi-train eval`: the measures on cases whose answer is known, and both commands on the CLI corpus."""

import json

import numpy as np
import pytest
import torch

from michi_core.audio import load_audio
from michi_core.model.codec import Codec
from michi_core.model.config import preset
from michi_core.model.model import MichiModel
from training.eval.asr import word_error_rate
from training.eval.duplex import answer_latencies, answered_turn_ends, summarize, user_speech, voiced_frames
from training.eval.heldout import held_out_rows
from training.eval.model_eval import adapter_disabled, backbone_perplexity
from training.eval.quality import SpeechQuality, import_optional, to_quality_rate
from training.eval.report import lookup, loss_curves, reason_for
from training.eval.speaker import cloning_scores

CODEC = preset("tiny").codec


@pytest.fixture(scope="module")
def held_out_speech(cli_corpus):
    """(24 kHz audio, text) of the first held-out utterance of the CLI corpus: espeak speech."""
    row = held_out_rows(cli_corpus.path, "utterance", 1)[0]
    return load_audio(row["audio_path"], CODEC.sample_rate), row["text"]


def test_wer_compares_spoken_forms_and_counts_every_edit():
    assert word_error_rate(["It costs $3.50, Mr. Smith."], ["it costs three dollars fifty cents mister smith"]) == 0
    assert word_error_rate(["one two three four"], ["one two four"]) == 0.25
    assert word_error_rate(["a b", "c d e f"], ["a b", ""]) == pytest.approx(4 / 6)  # pooled over the corpus


def test_quality_metrics_score_a_clip_against_itself_as_perfect(held_out_speech):
    quality = SpeechQuality()
    assert quality.unavailable == {}, f"metric packages missing: {quality.unavailable}"
    clean = to_quality_rate(held_out_speech[0], CODEC.sample_rate)
    noisy = clean + np.random.default_rng(0).normal(0, 0.05, clean.shape).astype(np.float32)
    assert quality.stoi(clean, clean) > 0.99 > quality.stoi(clean, noisy)
    assert quality.pesq_wb(clean, clean) > 4.0 > quality.pesq_wb(clean, noisy)
    scores = quality.dnsmos(clean)
    assert set(scores) == {"ovrl", "sig", "bak", "p808"} and all(1 <= v <= 5 for v in scores.values())
    assert quality.dnsmos(noisy)["bak"] < scores["bak"], "DNSMOS should hear the added noise"


def test_a_package_that_cannot_be_imported_is_reported_with_its_reason():
    module, reason = import_optional("no_such_metric_package")
    assert module is None and "no_such_metric_package" in reason
    assert reason_for({"dnsmos": reason}, "dnsmos.resynthesized.ovrl") == reason
    assert lookup({"dnsmos": None}, "dnsmos.resynthesized.ovrl") is None


def test_voiced_frames_find_speech_and_ignore_silence_and_faint_hiss(held_out_speech):
    speech = held_out_speech[0]
    assert voiced_frames(speech, CODEC).mean() > 0.3
    assert not voiced_frames(np.zeros_like(speech), CODEC).any()
    assert not voiced_frames(speech * 10 ** (-60 / 20), CODEC).any(), "-60 dB below speech is silence to a listener"


def test_turn_taking_measures_on_a_hand_made_timeline():
    rate = CODEC.frame_rate  # 12.5 frames per second
    turns = [{"role": "user", "start": 0.0, "end": 2.0, "backchannel": False},
             {"role": "assistant", "start": 2.4, "end": 4.0, "backchannel": False},
             {"role": "user", "start": 3.0, "end": 3.4, "backchannel": True},
             {"role": "user", "start": 4.4, "end": 6.0, "backchannel": False}]
    talking = user_speech(turns, 100, rate)
    assert talking.sum() == 25 + 20 and not talking[37:42].any(), "backchannels are no turn to yield to"
    assert answered_turn_ends(turns, rate) == [25], "the last user turn has no answer in the recording"
    voiced = np.zeros(100, dtype=bool)
    voiced[30:50] = True  # starts 5 frames after the user stopped
    assert answer_latencies(voiced, [25, 75], window_frames=25) == [5, None]
    summary = summarize([{"user_frames": 45, "model_voiced_during_user": 9, "reference_voiced_during_user": 0,
                          "model_latencies": [5, None], "reference_latencies": [3, 4]}])
    assert summary["model_voiced_during_user"] == 0.2 and summary["model_answered_turns"] == 0.5
    assert summary["model_answered_dialogues"] == 0.0 and summary["reference_answered_dialogues"] == 1.0
    assert summary["model_latency_frames"] == 5 and summary["reference_latency_frames"] == 3.5


def test_cloning_scores_win_when_each_clip_is_closest_to_its_own_prompt():
    prompts = np.eye(3)
    assert cloning_scores(prompts.copy(), prompts) == {"same_speaker": 1.0, "other_speakers": 0.0, "win_rate": 1.0}
    swapped = prompts[[1, 0, 2]]  # clips 0 and 1 sound like each other's prompt
    assert cloning_scores(swapped, prompts)["win_rate"] == pytest.approx(2 / 6)


def test_perplexity_without_the_adapter_is_the_original_backbone():
    torch.manual_seed(0)
    config = preset("tiny")
    config.adapter.rank = 4
    model = MichiModel(config).eval()
    texts = ["The market opens at ten.", "Take the second left after the bridge."]
    fresh = backbone_perplexity(model, texts)
    assert fresh["adapter"] and fresh["adapted"] == pytest.approx(fresh["original"]), "LoRA B starts at zero"
    with torch.no_grad():
        for name, p in model.backbone.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    trained = backbone_perplexity(model, texts)
    assert trained["original"] == pytest.approx(fresh["original"]) and trained["adapted"] != pytest.approx(
        trained["original"])
    with adapter_disabled(model):
        pass
    assert backbone_perplexity(model, texts)["adapted"] == pytest.approx(trained["adapted"]), "adapter back on"


def test_loss_curves_are_drawn_from_tensorboard_logs(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "run" / "codec" / "tensorboard"))
    for step in range(1, 6):
        writer.add_scalar("train/mel", 5.0 / step, step)
        writer.add_scalar("train/lr", 1e-3, step)
    writer.close()
    pngs = loss_curves(tmp_path / "run", tmp_path / "out")
    assert [p.name for p in pngs] == ["loss_codec.png"] and pngs[0].read_bytes()[:4] == b"\x89PNG"


def test_eval_codec_tells_an_untrained_codec_from_the_original(cli_corpus, run_cli, tmp_path):
    torch.manual_seed(0)
    Codec(CODEC).save_pretrained(tmp_path / "codec")
    out = tmp_path / "eval"
    run_cli("eval", "codec", "--checkpoint", str(tmp_path / "codec"), "--data", str(cli_corpus.path), "--limit", "2",
            "--out", str(out), "--no-dnsmos")
    report = json.loads((out / "eval.json").read_text())
    m = report["metrics"]
    assert report["utterances"] == 2 and report["whisper"] == "base" and report["streaming"]
    assert m["wer"]["original"] < 0.5 < m["wer"]["resynthesized"], m["wer"]
    assert 0 <= m["stoi"] < 0.8 and m["mel_distance"] > 0 and np.isfinite(list(m["latents"].values())).all()
    assert m["dnsmos"] is None and report["unavailable"]["dnsmos"] == "switched off (--no-dnsmos)"
    assert "| WER of the resynthesized audio |" in (out / "EVAL.md").read_text()
    assert len(list((out / "audio").glob("*.flac"))) == 2


def test_eval_model_without_dialogues_reports_duplex_as_not_measured(cli_corpus, run_cli, tmp_path):
    torch.manual_seed(0)
    config = preset("tiny")
    config.adapter.rank = 4
    MichiModel(config).save_pretrained(tmp_path / "model")
    out = tmp_path / "eval"
    run_cli("eval", "model", "--checkpoint", str(tmp_path / "model"), "--data", str(cli_corpus.path), "--limit", "2",
            "--out", str(out), "--whisper", "tiny.en")
    report = json.loads((out / "eval.json").read_text())
    m = report["metrics"]
    assert m["say"]["sentences"] == 2 and 0 <= m["say"]["wer"] and m["say"]["seconds"] > 0
    assert m["speaker_similarity"]["speakers"] == 2 and 0 <= m["speaker_similarity"]["win_rate"] <= 1
    assert m["perplexity"]["adapter"] and m["perplexity"]["adapted"] == pytest.approx(m["perplexity"]["original"])
    assert m["duplex"] is None and "no held-out dialogues" in report["unavailable"]["duplex"]
    assert "n/a (the corpus has no held-out dialogues" in (out / "EVAL.md").read_text()
