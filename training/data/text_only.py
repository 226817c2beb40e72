"""`michi-train data text`: text-only samples mixed into speech training.

Training only on speech frames wears away the backbone's language ability; batches of plain
text (generated paragraphs, written retrieval Q&A and chats, and the user's own text files cut
into passages) keep it. They are manifest rows of kind "text" with no audio.
"""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path

from .manifest import Manifest, text_keys, text_split
from .textgen import TextGenerator, read_text_file

log = logging.getLogger(__name__)

PASSAGE_WORDS = 160  # words per passage cut from a user's text file


def file_passages(path: str | Path, words_per_passage: int = PASSAGE_WORDS) -> list[str]:
    """Whole sentences grouped into passages of about words_per_passage words."""
    passages: list[str] = []
    current: list[str] = []
    for sentence in read_text_file(path, max_words=words_per_passage):
        current.append(sentence)
        if sum(len(s.split()) for s in current) >= words_per_passage:
            passages.append(" ".join(current))
            current = []
    if current:
        passages.append(" ".join(current))
    return passages


def build_text_only(corpus_dir: str | Path, count: int, seed: int = 0,
                    text_files: list[str | Path] = ()) -> dict:
    """Add `count` generated passages (resuming) plus every passage of the given text files."""
    manifest = Manifest(corpus_dir)
    done = manifest.ids("kind = 'text'")
    rows = []
    generator = TextGenerator(random.Random(seed))
    for index in range(count):
        item_id = f"text-s{seed}-{index:07d}"
        if item_id not in done:
            generator.rng = random.Random(f"text:{seed}:{index}")
            rows.append(_row(item_id, "textgen", generator.passage()))
    for path in map(Path, text_files):
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem)
        for index, passage in enumerate(file_passages(path)):
            item_id = f"text-file-{stem}-{index:05d}"
            if item_id not in done:
                rows.append(_row(item_id, "file", passage))
    manifest.add_many(rows)
    dropped = manifest.enforce_disjoint_texts()
    summary = {"new_rows": len(rows), "split_conflicts_dropped": dropped}
    log.info("text-only: %s", summary)
    return summary


def _row(item_id: str, source: str, text: str) -> dict:
    return {"id": item_id, "kind": "text", "source": source, "split": text_split(text), "text": text,
            "text_keys": text_keys([text])}
