"""Cut a document's text into overlapping chunks of whole sentences under a token budget.

Whole sentences keep each chunk readable when it is injected into a call; the overlap keeps a
fact that straddles a boundary findable from either side; the budget keeps every chunk under
what the embedder sees (text past its limit would be silently invisible to vector search).
Chunks are character spans of the extracted text, so a passage can always be traced back to
its exact place (and page) in the document.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# A sentence ends at . ! ? (and closing quotes/brackets) before whitespace, at a blank line, or
# before a line that starts a Markdown heading or list item.
_BOUNDARY = re.compile(r"""(?<=[.!?…])["'”’)\]]*\s+|\n\s*\n\s*|\n(?=\s*(?:#|[-*•]\s|\d+[.)]\s))""")
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class ChunkSpan:
    start: int  # character offsets into the extracted text, end exclusive
    end: int
    token_count: int
    page: int | None  # 1-based page the chunk starts on; None for unpaginated formats


@dataclass(frozen=True)
class ChunkingConfig:
    max_tokens: int = 128  # short chunks retrieve more precisely and cost less context to inject
    overlap_tokens: int = 24  # about one sentence carried into the next chunk

    def __post_init__(self) -> None:
        assert 0 <= self.overlap_tokens < self.max_tokens, "overlap must be smaller than the chunk budget"


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence, whitespace trimmed, empty pieces dropped."""
    spans = []
    start = 0
    for boundary in _BOUNDARY.finditer(text):
        spans.append((start, boundary.start()))
        start = boundary.end()
    spans.append((start, len(text)))
    trimmed = []
    for begin, end in spans:
        piece = text[begin:end]
        stripped = piece.strip()
        if stripped:
            begin += len(piece) - len(piece.lstrip())
            trimmed.append((begin, begin + len(stripped)))
    return trimmed


def chunk_text(
    text: str,
    count_tokens: Callable[[Sequence[str]], list[int]],
    config: ChunkingConfig = ChunkingConfig(),
    page_starts: Sequence[int] | None = None,
) -> list[ChunkSpan]:
    """Greedy packing of sentences into chunks; sentences longer than the budget split at words."""
    units = _fit_units(text, sentence_spans(text), count_tokens, config.max_tokens)
    chunks = []
    first = 0
    while first < len(units):
        last, total = first, units[first][2]
        while last + 1 < len(units) and total + units[last + 1][2] <= config.max_tokens:
            last += 1
            total += units[last][2]
        start = units[first][0]
        page = bisect_right(page_starts, start) if page_starts else None
        chunks.append(ChunkSpan(start, units[last][1], total, page))
        if last + 1 >= len(units):
            break
        # Start the next chunk on the trailing sentences that fit in the overlap, always moving on.
        next_first, carried = last + 1, 0
        while next_first - 1 > first and carried + units[next_first - 1][2] <= config.overlap_tokens:
            next_first -= 1
            carried += units[next_first][2]
        first = next_first
    return chunks


def _fit_units(
    text: str,
    spans: list[tuple[int, int]],
    count_tokens: Callable[[Sequence[str]], list[int]],
    max_tokens: int,
) -> list[tuple[int, int, int]]:
    """(start, end, tokens) units no longer than max_tokens: sentences, or word runs of long ones."""
    counts = count_tokens([text[a:b] for a, b in spans])
    units = []
    for (begin, end), tokens in zip(spans, counts):
        if tokens <= max_tokens:
            units.append((begin, end, tokens))
        else:
            units.extend(_split_long(text, begin, end, count_tokens, max_tokens))
    return units


def _split_long(
    text: str, begin: int, end: int, count_tokens: Callable[[Sequence[str]], list[int]], max_tokens: int
) -> list[tuple[int, int, int]]:
    """A sentence over budget (a table, a PDF without punctuation) cut into runs of whole words."""
    words = [(m.start(), m.end()) for m in _WORD.finditer(text, begin, end)]
    word_tokens = count_tokens([text[a:b] for a, b in words])
    runs = []
    run_start, run_tokens, run_end = None, 0, None
    for (a, b), tokens in zip(words, word_tokens):
        tokens = min(tokens, max_tokens)  # a single absurd "word" is truncated by the embedder
        if run_start is not None and run_tokens + tokens > max_tokens:
            runs.append((run_start, run_end, run_tokens))
            run_start, run_tokens = None, 0
        if run_start is None:
            run_start = a
        run_tokens += tokens
        run_end = b
    if run_start is not None:
        runs.append((run_start, run_end, run_tokens))
    return runs
