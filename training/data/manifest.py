"""The corpus manifest: one SQLite row per utterance, dialogue or text-only sample (sqlite-utils).

A corpus is a folder: `manifest.sqlite3` plus the audio under `audio/`. Builders write a row only
after its audio file is complete, so the manifest never points at a missing or partial file, and
a re-run skips every id already present (resume). Only the main process writes; workers return
rows to it.

Splits are decided by speaker and by text, so that valid/test measure generalisation:
- a speaker belongs to exactly one split (`speaker_split`): espeak variants m5/f4 are valid, m7/f5
  test, in every accent (a variant is the timbre); the piper voice is train; corpus speakers go
  by the corpus's own split (LibriTTS dev-*/test-*) or by a hash of their id;
- a text belongs to one split (`text_split`, a hash of its spoken form); the synth planner draws
  texts of the job's split, and `enforce_disjoint_texts` drops held-out rows whose text also
  occurs in train, whatever built them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import sqlite_utils

from .normalize import normalize

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.sqlite3"
SPLITS = ("train", "valid", "test")
HELD_OUT_FRACTION = 0.05  # of texts and of hashed speakers, for valid and again for test
HELD_OUT_ESPEAK_VARIANTS = {"valid": ("m5", "f4"), "test": ("m7", "f5")}

# Column -> type. JSON columns hold lists/dicts and are (de)serialised here.
COLUMNS: dict[str, type] = {
    "id": str,
    "kind": str,  # "utterance" | "dialogue" | "text"
    "source": str,  # "synth" | "libritts" | "folder" | "dialogue" | "textgen"
    "split": str,  # "train" | "valid" | "test"
    "speaker": str,  # the speaker (for a dialogue: the user's voice, which decides its split)
    "assistant_speaker": str,  # dialogues: the assistant's voice (the model's own, same in all splits)
    "path": str,  # audio, relative to the corpus folder (dialogues: the assistant channel)
    "user_path": str,  # dialogues: the user channel
    "text": str,  # what is said, as written ("2 lbs of flour")
    "context": str,  # dialogues: the retrieval context the assistant reads
    "text_keys": str,  # JSON [normalized texts] used for text-disjoint splits
    "duration": float,  # seconds
    "sample_rate": int,
    "synth_words": str,  # JSON [[word, start_s, end_s]] from the synthesizer itself (espeak), or NULL
    "params": str,  # JSON: voice prosody, dialogue timing choices, source file
    "alignment": str,  # JSON [[word, start_s, end_s]] from ASR word timings mapped onto `text`
    "turns": str,  # dialogues, JSON [{role, speaker, text, start, end, interrupted, backchannel, words}]
    "wer": float,  # word error rate of ASR against `text` (spoken form)
    "asr_text": str,  # what ASR heard, to see why a row was dropped
    "aligner": str,  # which ASR model produced `alignment`
    "filter_reason": str,  # NULL = usable; else why it is excluded
    "created": float,  # unix time the row was written
}
JSON_COLUMNS = {"text_keys", "synth_words", "params", "alignment", "turns"}


class Manifest:
    def __init__(self, corpus: str | Path):
        """corpus: the corpus folder, or its manifest.sqlite3 file."""
        path = Path(corpus)
        self.root = path.parent if path.name == MANIFEST_NAME else path
        self.root.mkdir(parents=True, exist_ok=True)
        self.db = sqlite_utils.Database(self.root / MANIFEST_NAME)
        self.db.enable_wal()  # readers (a DataLoader, `stats`) never block a running build
        self.items = self.db.table("items")
        if not self.items.exists():
            self.items.create(COLUMNS, pk="id", not_null={"kind", "source"})
            for column in ("kind", "source", "split", "speaker"):
                self.items.create_index([column])
        for column, kind in COLUMNS.items():  # a corpus written by an older version gains new columns
            if column not in self.items.columns_dict:
                self.items.add_column(column, kind)

    # -- writing -------------------------------------------------------------------------------------
    def add(self, row: dict[str, Any]) -> None:
        """Insert (or replace) one row; commits at once so a killed build keeps it."""
        unknown = set(row) - set(COLUMNS)
        assert not unknown, f"unknown manifest columns {sorted(unknown)}"
        self.items.insert(_encode({"created": time.time(), **row}), replace=True)

    def add_many(self, rows: list[dict[str, Any]]) -> None:
        """Insert rows in one transaction: after a kill, all of them are there or none."""
        with self.db.atomic():
            for row in rows:
                self.add(row)

    def update(self, item_id: str, **fields: Any) -> None:
        self.items.update(item_id, _encode(fields))

    # -- reading -------------------------------------------------------------------------------------
    def rows(self, where: str | None = None, where_args: Iterable[Any] | dict | None = None,
             order_by: str = "id") -> Iterator[dict[str, Any]]:
        for row in self.items.rows_where(where, where_args, order_by=order_by):
            yield _decode(row)

    def ids(self, where: str | None = None, where_args: Iterable[Any] | None = None) -> set[str]:
        return {row["id"] for row in self.items.rows_where(where, where_args, select="id")}

    def total_duration(self, where: str = "1", where_args: Iterable[Any] | None = None) -> float:
        sql = f"select coalesce(sum(duration), 0) from items where {where}"
        return float(self.db.execute(sql, list(where_args or [])).fetchone()[0])

    def audio_paths(self, split: str) -> list[Path]:
        """Every usable audio file of a split, both channels of dialogues (what the codec trains on)."""
        paths: list[Path] = []
        for row in self.items.rows_where("filter_reason is null and split = ? and path is not null", [split],
                                         select="path, user_path", order_by="id"):
            paths += [self.resolve(p) for p in (row["path"], row["user_path"]) if p]
        return paths

    def resolve(self, path: str) -> Path:
        """A manifest path -> a file path (relative ones live under the corpus folder, absolute ones
        point at corpus files used in place)."""
        return self.root / path

    # -- splits --------------------------------------------------------------------------------------
    def enforce_disjoint_texts(self) -> int:
        """Drop held-out rows that share a text with train (or valid rows that share one with test).

        Returns how many rows this call excluded; their filter_reason says which rule fired.
        """
        keys_by_split: dict[str, set[str]] = {split: set() for split in SPLITS}
        usable = list(self.rows("filter_reason is null and split is not null"))
        for row in usable:
            keys_by_split[row["split"]].update(row["text_keys"] or [])
        dropped = 0
        for row in usable:
            keys = set(row["text_keys"] or [])
            reason = None
            if row["split"] != "train" and keys & keys_by_split["train"]:
                reason = "text_in_train"
            elif row["split"] == "valid" and keys & keys_by_split["test"]:
                reason = "text_in_test"
            if reason:
                self.update(row["id"], filter_reason=reason)
                dropped += 1
        if dropped:
            log.info("dropped %d held-out rows whose text also occurs in another split", dropped)
        return dropped

    # -- statistics ----------------------------------------------------------------------------------
    def stats(self, frame_rate: float) -> dict[str, Any]:
        """Counts, hours, filter reasons, the ASR check per voice family, and how far ASR word
        starts land from the synthesizer's own (in frames), for `michi-train data stats`."""
        usable, hours, filtered = Counter(), Counter(), Counter()
        checked, dropped = Counter(), Counter()  # ASR check, by voice family ("piper", "espeak", ...)
        wers: list[float] = []
        offsets: list[int] = []  # |frame of ASR word start - frame of synthesizer word start|
        speakers_by_split: dict[str, set[str]] = {split: set() for split in SPLITS}
        for row in self.rows():
            kind = f"{row['kind']}/{row['source']}"
            family = (row["speaker"] or "none").partition(":")[0]
            if row["wer"] is not None or row["filter_reason"] == "asr_mismatch":
                checked[family] += 1
                dropped[family] += row["filter_reason"] == "asr_mismatch"
            if row["filter_reason"]:
                filtered[f"{kind}/{row['filter_reason']}"] += 1
                continue
            usable[f"{kind}/{row['split']}"] += 1
            hours[f"{kind}/{row['split']}"] += (row["duration"] or 0) / 3600
            speakers_by_split[row["split"]].add(row["speaker"])
            if row["wer"] is not None:
                wers.append(row["wer"])
            if row["alignment"] and row["synth_words"] and len(row["alignment"]) == len(row["synth_words"]):
                offsets += [abs(int(a[1] * frame_rate) - int(s[1] * frame_rate))
                            for a, s in zip(row["alignment"], row["synth_words"])]
        return {
            "rows": sum(usable.values()) + sum(filtered.values()),
            "usable": dict(sorted(usable.items())),
            "hours": {k: round(h, 4) for k, h in sorted(hours.items())},
            "filtered": dict(sorted(filtered.items())),
            "asr_check": {family: {"checked": n, "dropped": dropped[family],
                                   "dropped_fraction": round(dropped[family] / n, 4)}
                          for family, n in sorted(checked.items())},
            "mean_wer_kept": round(sum(wers) / len(wers), 4) if wers else None,
            "alignment_vs_synth": ({"words": len(offsets),
                                    "mean_abs_frames": round(sum(offsets) / len(offsets), 3),
                                    "within_1_frame": round(sum(o <= 1 for o in offsets) / len(offsets), 4)}
                                   if offsets else None),
            "speakers": {split: len(s - {None}) for split, s in speakers_by_split.items()},
        }


def _encode(row: dict[str, Any]) -> dict[str, Any]:
    return {k: json.dumps(v) if k in JSON_COLUMNS and v is not None else v for k, v in row.items()}


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    return {k: json.loads(v) if k in JSON_COLUMNS and v is not None else v for k, v in row.items()}


# -- split rules ---------------------------------------------------------------------------------------
def _hashed_split(key: str) -> str:
    fraction = int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") / 2**64
    if fraction < HELD_OUT_FRACTION:
        return "test"
    if fraction < 2 * HELD_OUT_FRACTION:
        return "valid"
    return "train"


def speaker_split(speaker: str, corpus_split: str | None = None) -> str:
    """The one split a speaker belongs to."""
    if corpus_split is not None:
        assert corpus_split in SPLITS, f"corpus split must be one of {SPLITS}, got {corpus_split!r}"
        return corpus_split
    family, _, name = speaker.partition(":")
    if family == "piper":
        return "train"  # the only natural synthetic voice: training needs it
    if family == "espeak":
        variant = name.partition("+")[2]
        return next((split for split, variants in HELD_OUT_ESPEAK_VARIANTS.items() if variant in variants),
                    "train")
    return _hashed_split(f"speaker:{speaker}")


def scheduled_split(index: int) -> str:
    """Split of generated job `index`: exactly HELD_OUT_FRACTION valid and test in every stretch of
    1 / HELD_OUT_FRACTION jobs, so even a small build has both held-out splits."""
    period = round(1 / HELD_OUT_FRACTION)
    return {period // 3: "valid", 2 * period // 3: "test"}.get(index % period, "train")


def text_key(text: str) -> str:
    """The identity of a text for splitting: its spoken form ("2 lbs" == "two pounds")."""
    return normalize(text)


def text_split(text: str) -> str:
    return _hashed_split(f"text:{text_key(text)}")


def text_keys(texts: Iterable[str]) -> list[str]:
    return sorted({key for key in map(text_key, texts) if key})
