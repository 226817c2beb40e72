"""Hybrid retrieval: BM25 over the FTS5 index and cosine over the embeddings, merged by
reciprocal rank fusion (RRF).

Each side covers the other's blind spot: BM25 finds exact names, numbers and rare words that a
small embedder blurs; the embedder finds paraphrases that share no word with the question.
RRF (score = sum over lists of 1 / (k + rank)) merges them by rank alone, so the two scores,
which live on unrelated scales, never need calibrating.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from michi_core.stores.conversations import SourceRef
from michi_core.stores.rag.embedder import Embedder
from michi_core.stores.rag.store import DocumentStore


@dataclass(frozen=True)
class Passage:
    chunk_id: int
    document_id: int
    title: str
    path: str
    content_hash: str  # of the document, so a saved link can tell if it still points at this text
    text: str
    char_start: int  # offsets into the document's extracted text
    char_end: int
    page: int | None  # 1-based, PDFs only
    score: float  # RRF score: only for ordering, not comparable between queries
    similarity: float | None  # cosine with the query; None if embedded by another model

    def source_ref(self) -> SourceRef:
        """What a transcript keeps of this passage once it was put into a call."""
        return SourceRef(title=self.title, path=self.path, text=self.text, page=self.page,
                         char_start=self.char_start, char_end=self.char_end)


class Retriever:
    def __init__(
        self,
        store: DocumentStore,
        embedder: Embedder,
        candidates: int = 50,  # taken from each list before fusion
        rrf_k: int = 60,  # the constant of Cormack et al. (2009): damps the weight of the top ranks
    ):
        self.store = store
        self.embedder = embedder
        self.candidates = candidates
        self.rrf_k = rrf_k

    def search(self, query: str, limit: int = 5, exclude: Collection[int] = ()) -> list[Passage]:
        """The best `limit` passages of enabled documents, leaving out chunk ids in `exclude`."""
        exclude = set(exclude)
        wanted = self.candidates + len(exclude)
        keyword_ranked = [i for i in self.store.keyword_search(query, wanted) if i not in exclude]

        ids, matrix = self.store.vector_index(self.embedder.name, self.embedder.dim)  # (N,), (N, D)
        similarity: dict[int, float] = {}
        vector_ranked: list[int] = []
        if len(ids):  # an empty store never loads the model
            query_vector = self.embedder.embed([query])[0]  # (D,)
            cosines = matrix @ query_vector  # (N,)
            order = np.argsort(-cosines, kind="stable")[:wanted]
            vector_ranked = [int(ids[i]) for i in order if int(ids[i]) not in exclude]
            similarity = dict(zip(ids.tolist(), cosines.tolist()))

        fused: dict[int, float] = {}
        for ranked in (keyword_ranked[: self.candidates], vector_ranked[: self.candidates]):
            for rank, chunk_id in enumerate(ranked, start=1):
                fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (self.rrf_k + rank)
        best = sorted(fused, key=lambda chunk_id: (-fused[chunk_id], chunk_id))[:limit]
        chunks = self.store.chunks_by_id(best)
        return [
            Passage(
                chunk_id=chunk.id, document_id=chunk.document_id, title=chunk.title, path=chunk.path,
                content_hash=chunk.content_hash, text=chunk.text, char_start=chunk.char_start,
                char_end=chunk.char_end, page=chunk.page, score=fused[chunk.id],
                similarity=similarity.get(chunk.id),
            )
            for chunk in (chunks[chunk_id] for chunk_id in best)
        ]
