"""The held-out part of a corpus: rows of the valid and test splits, whose speakers and texts never
occur in train (see training/data/manifest.py), in a stable order so that `--limit N` always picks
the same N."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.data.manifest import Manifest

HELD_OUT = ("valid", "test")


def held_out_rows(corpus: str | Path, kind: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Usable rows of `kind` ("utterance", "dialogue", "text") from valid then test, by id; audio
    paths resolved (`audio_path`, and `user_audio_path` for dialogues)."""
    manifest = Manifest(corpus)
    rows = []
    for split in HELD_OUT:
        for row in manifest.rows("filter_reason is null and split = ? and kind = ?", [split, kind]):
            if row["path"]:
                row["audio_path"] = manifest.resolve(row["path"])
            if row["user_path"]:
                row["user_audio_path"] = manifest.resolve(row["user_path"])
            rows.append(row)
    return rows[:limit] if limit else rows


def held_out_texts(corpus: str | Path, limit: int | None = None) -> list[str]:
    """Held-out text-only passages; the held-out utterances' sentences when the corpus has none."""
    texts = [row["text"] for row in held_out_rows(corpus, "text")]
    if not texts:
        texts = [row["text"] for row in held_out_rows(corpus, "utterance")]
    return texts[:limit] if limit else texts


def one_per_speaker(rows: list[dict[str, Any]], limit: int | None = None) -> list[dict[str, Any]]:
    """The first row of each speaker, at most `limit` speakers."""
    first: dict[str, dict[str, Any]] = {}
    for row in rows:
        first.setdefault(row["speaker"], row)
    chosen = list(first.values())
    return chosen[:limit] if limit else chosen
