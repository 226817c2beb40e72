"""Retrieval-augmented generation: the user's documents, searchable during a call.

`store` keeps documents, chunks and vectors in Michi's SQLite database; `ingest` turns files
into stored documents (via `extract` and `chunking`); `retrieval` finds passages by BM25 and
embeddings; `injector` turns an utterance into context text for the live call; `cli` is
`michi docs`. Nothing here imports Qt, and the embedding model loads only when first used.
"""

from michi_core.stores.rag.chunking import ChunkingConfig
from michi_core.stores.rag.embedder import Embedder, MiniLMEmbedder, default_embedder
from michi_core.stores.rag.extract import SUPPORTED_SUFFIXES, ExtractionError
from michi_core.stores.rag.ingest import MAX_FILE_BYTES, Ingestor, IngestProgress, IngestResult, expand_paths
from michi_core.stores.rag.injector import ContextInjector, Injection, call_injector
from michi_core.stores.rag.retrieval import Passage, Retriever
from michi_core.stores.rag.store import Document, DocumentStore, DuplicateDocument

__all__ = [
    "MAX_FILE_BYTES",
    "SUPPORTED_SUFFIXES",
    "ChunkingConfig",
    "ContextInjector",
    "Document",
    "DocumentStore",
    "DuplicateDocument",
    "Embedder",
    "ExtractionError",
    "IngestProgress",
    "IngestResult",
    "Ingestor",
    "Injection",
    "MiniLMEmbedder",
    "Passage",
    "Retriever",
    "call_injector",
    "default_embedder",
    "expand_paths",
]
