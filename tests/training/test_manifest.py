"""The manifest: splits by speaker and by text, filter statistics, and what the CLI reports."""

import json

from michi_core.model.config import CodecConfig
from training.data.manifest import Manifest, speaker_split, text_keys, text_split


def test_splits_share_no_speaker_and_no_text(cli_corpus):
    rows = list(Manifest(cli_corpus.path).rows())
    usable = [r for r in rows if r["filter_reason"] is None]
    speakers = {split: {r["speaker"] for r in rows if r["split"] == split}
                for split in ("train", "valid", "test")}
    texts = {split: {k for r in usable if r["split"] == split for k in r["text_keys"]}
             for split in ("train", "valid", "test")}
    assert speakers["valid"] and speakers["test"], f"held-out speakers expected: {speakers}"
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
        assert not speakers[a] & speakers[b], f"{a}/{b} share speakers {speakers[a] & speakers[b]}"
        assert not texts[a] & texts[b], f"{a}/{b} share texts {texts[a] & texts[b]}"
    for row in rows:
        assert speaker_split(row["speaker"]) == row["split"] == text_split(row["text"]), row["id"]


def test_speaker_rules():
    assert speaker_split("piper:joe") == "train", "the only natural voice trains"
    assert speaker_split("espeak:en-us+m7") == speaker_split("espeak:en-gb-scotland+m7") == "test", \
        "a held-out variant is held out in every accent"
    assert speaker_split("espeak:en-029+f4") == "valid"
    assert speaker_split("libritts:84", corpus_split="valid") == "valid", "a corpus's own split wins"
    hashed = [speaker_split(f"folder:speaker{i}") for i in range(2000)]
    assert 0.03 < hashed.count("test") / 2000 < 0.07 and 0.03 < hashed.count("valid") / 2000 < 0.07


def test_held_out_rows_repeating_a_training_text_are_dropped(tmp_path):
    manifest = Manifest(tmp_path)
    said = "Please add 2 lbs of flour to the list."
    rows = [("a", "train", said), ("b", "test", "Please add two pounds of flour to the list!"),
            ("c", "test", "Something else entirely."), ("d", "valid", "Something else entirely.")]
    for item_id, split, text in rows:
        manifest.add({"id": item_id, "kind": "utterance", "source": "synth", "split": split, "text": text,
                      "speaker": f"s-{item_id}", "text_keys": text_keys([text])})
    assert manifest.enforce_disjoint_texts() == 2
    reasons = {r["id"]: r["filter_reason"] for r in manifest.rows()}
    assert reasons == {"a": None, "b": "text_in_train", "c": None, "d": "text_in_test"}, \
        "same spoken text ('2 lbs' == 'two pounds') counts as the same text"


def test_stats_count_what_the_filter_dropped(cli_corpus, run_cli):
    stats = json.loads(run_cli("data", "stats", "--out", str(cli_corpus.path)).stdout)
    manifest = Manifest(cli_corpus.path)
    dropped = sum(1 for r in manifest.rows() if r["filter_reason"] == "asr_mismatch")
    assert stats == manifest.stats(CodecConfig().frame_rate)
    assert stats["filtered"].get("utterance/synth/asr_mismatch", 0) == dropped
    check = stats["asr_check"]
    assert sum(family["checked"] for family in check.values()) == stats["rows"], "every utterance is checked"
    assert check["piper"]["dropped_fraction"] < check["espeak"]["dropped_fraction"], "robotic fails more"
    assert stats["alignment_vs_synth"]["within_1_frame"] > 0.6, stats["alignment_vs_synth"]
    assert sum(stats["usable"].values()) + dropped == stats["rows"]


def test_manifest_opens_by_folder_or_file(cli_corpus):
    by_file = Manifest(cli_corpus.path / "manifest.sqlite3")
    assert by_file.root == cli_corpus.path
    train = by_file.audio_paths("train")
    assert train and all(p.exists() for p in train), "the codec stage reads these"
