"""Retrieval-augmented generation: the user's documents, searchable during a call.

`store` keeps documents, chunks and vectors in Michi's SQLite database; `ingest` turns files
into stored documents (via `extract` and `chunking`); `retrieval` finds passages by BM25 and
embeddings; `injector` turns an utterance into context text for the live call; `cli` is
`michi docs`. Nothing here imports Qt, and the embedding model loads only when first used.
"""

from .chunking import ChunkingConfig
from .embedder import Embedder, MiniLMEmbedder, default_embedder
from .extract import SUPPORTED_SUFFIXES, ExtractionError
from .ingest import MAX_FILE_BYTES, Ingestor, IngestProgress, IngestResult, expand_paths
from .injector import ContextInjector, Injection, call_injector
from .retrieval import Passage, Retriever
from .store import Document, DocumentStore, DuplicateDocument

__all__ = [
    "ChunkingConfig", "ContextInjector", "Document", "DocumentStore", "DuplicateDocument", "Embedder",
    "ExtractionError", "IngestProgress", "IngestResult", "Ingestor", "Injection", "MAX_FILE_BYTES",
    "MiniLMEmbedder", "Passage", "Retriever", "SUPPORTED_SUFFIXES", "call_injector", "default_embedder",
    "expand_paths",
]
