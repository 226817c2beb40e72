"""Chunking: whole sentences, under the embedder's token budget, overlapping, traceable offsets."""

from __future__ import annotations

import pytest

from michi_core.stores.rag.chunking import ChunkingConfig, chunk_text, sentence_spans
from michi_core.stores.rag.embedder import default_embedder


@pytest.fixture(scope="module")
def count_tokens():
    return default_embedder().count_tokens  # the real WordPiece tokenizer; the model is not loaded


def test_sentences_split_at_punctuation_blank_lines_and_list_items():
    text = "First one. Second one!  Third?\n\n# Heading\n- item one\n- item two\nwrapped (a PDF line).\n"
    assert [text[a:b] for a, b in sentence_spans(text)] == [
        "First one.", "Second one!", "Third?", "# Heading", "- item one", "- item two\nwrapped (a PDF line).",
    ]


def test_chunks_respect_budget_overlap_and_cover_every_sentence(count_tokens):
    sentences = [f"Sentence number {i} says that the value of item {i} is {i * 7} units." for i in range(60)]
    text = " ".join(sentences)
    config = ChunkingConfig(max_tokens=64, overlap_tokens=20)
    chunks = chunk_text(text, count_tokens, config)

    assert len(chunks) > 5
    for chunk in chunks:
        piece = text[chunk.start : chunk.end]
        assert count_tokens([piece])[0] <= config.max_tokens, "a chunk would be truncated by the embedder"
        assert piece.startswith("Sentence number") and piece.endswith("units."), "chunks hold whole sentences"
    covered = set()
    for chunk in chunks:
        covered.update(s for s in sentences if s in text[chunk.start : chunk.end])
    assert covered == set(sentences), "every sentence must be findable in some chunk"
    for previous, current in zip(chunks, chunks[1:]):
        assert current.start < previous.end, "consecutive chunks share a sentence"
        assert current.start > previous.start, "chunking always moves forward"


def test_overlong_sentence_is_split_at_words(count_tokens):
    text = "Intro sentence. " + " ".join(f"word{i}" for i in range(400)) + " end. Outro sentence."
    chunks = chunk_text(text, count_tokens, ChunkingConfig(max_tokens=50, overlap_tokens=10))
    assert all(count_tokens([text[c.start : c.end]])[0] <= 50 for c in chunks)
    joined = " ".join(text[c.start : c.end] for c in chunks)
    assert all(f"word{i}" in joined for i in range(400)), "no words lost when splitting"


def test_chunks_know_their_page(count_tokens):
    pages = ["Page one talks about apples. " * 12, "Page two talks about pears. " * 12,
             "Page three talks about plums. " * 12]
    text, page_starts = "", []
    for page in pages:
        if text:
            text += "\n\n"
        page_starts.append(len(text))
        text += page.strip()
    chunks = chunk_text(text, count_tokens, ChunkingConfig(max_tokens=40, overlap_tokens=0), page_starts)
    fruit = {1: "apples", 2: "pears", 3: "plums"}
    for chunk in chunks:
        first_sentence = text[chunk.start : chunk.end].split(".")[0]
        assert fruit[chunk.page] in first_sentence, "page = the page where the chunk starts"
    assert {chunk.page for chunk in chunks} == {1, 2, 3}
    assert chunk_text("No pages here.", count_tokens)[0].page is None


def test_overlap_must_be_smaller_than_budget():
    with pytest.raises(AssertionError, match="overlap"):
        ChunkingConfig(max_tokens=32, overlap_tokens=32)
