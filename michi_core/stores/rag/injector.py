"""What the call hears from the user's documents: passages relevant to an utterance, formatted
as text to prefill between frames, within a budget, never the same chunk twice in one call.

One `ContextInjector` lives for one call (`reset()` starts another). The budget is measured by
a function the caller gives: characters by default, or the backbone tokenizer's count, so the
engine can reason in tokens without this module knowing its tokenizer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from michi_core.stores.rag.embedder import Embedder
from michi_core.stores.rag.retrieval import Passage, Retriever
from michi_core.stores.rag.store import DocumentStore

HEADER = "From the user's documents:"


@dataclass(frozen=True)
class Injection:
    text: str  # to prefill as text positions; "" when nothing new and relevant was found
    passages: list[Passage] = field(default_factory=list)  # in the order they appear in `text`


class ContextInjector:
    def __init__(
        self,
        retriever: Retriever,
        budget: int = 1500,  # most `measure` units one injection may cost (header included)
        measure: Callable[[str], int] = len,
        max_passages: int = 3,
        # Below this cosine a passage is noise: "hello, how are you" must inject nothing.
        # all-MiniLM-L6-v2 puts on-topic question/passage pairs at ~0.4-0.8, unrelated at ~0-0.15.
        min_similarity: float = 0.3,
    ):
        self.retriever = retriever
        self.budget = budget
        self.measure = measure
        self.max_passages = max_passages
        self.min_similarity = min_similarity
        self._injected: set[int] = set()

    @property
    def injected_chunk_ids(self) -> frozenset[int]:
        return frozenset(self._injected)

    def reset(self) -> None:
        """A new call: every chunk may be injected again."""
        self._injected.clear()

    def inject(self, utterance: str) -> Injection:
        """Passages for this utterance that fit the budget and were not injected in this call.

        Passages are taken best first; one that does not fit what is left of the budget is
        skipped for a later, shorter one rather than cut mid-sentence.
        """
        if not utterance.strip():
            return Injection("")
        candidates = self.retriever.search(utterance, limit=self.max_passages * 3, exclude=self._injected)
        chosen: list[Passage] = []
        text = HEADER
        for passage in candidates:
            if len(chosen) == self.max_passages:
                break
            if passage.similarity is None or passage.similarity < self.min_similarity:
                continue
            candidate_text = f"{text}\n[{passage.source_ref().label}] {passage.text}"
            if self.measure(candidate_text) <= self.budget:
                chosen.append(passage)
                text = candidate_text
        if not chosen:
            return Injection("")
        self._injected.update(passage.chunk_id for passage in chosen)
        return Injection(text, chosen)


def call_injector(count_tokens: Callable[[str], int], max_positions: int, store_path: Path | None = None,
                  embedder: Embedder | None = None, budget_tokens: int = 256) -> ContextInjector:
    """The injector of one live call: Michi's documents, a budget in backbone tokens (at most a
    quarter of the context window, so passages never crowd out the conversation itself).

    Opens its own store: call it in the thread that will search (SQLite's rule); the caller
    closes `injector.retriever.store` when the call ends. An empty store costs nothing: the
    embedding model loads only when there is something to compare with.
    """
    if embedder is None:
        from michi_core.stores.rag.embedder import default_embedder

        embedder = default_embedder()
    store = DocumentStore(store_path)
    return ContextInjector(Retriever(store, embedder), budget=min(budget_tokens, max_positions // 4),
                           measure=count_tokens)
