"""Ingestion: file -> checked bytes -> text -> chunks -> vectors -> one committed document.

Each file of a batch ends with its own `IngestResult`; a bad file never stops the others.
The size is checked before a byte is read, the bytes are read once (hash and text always come
from the same version), and nothing is written until the document is complete, so stopping or
killing the process mid-file loses only that file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from michi_core.stores.rag.chunking import ChunkingConfig, chunk_text
from michi_core.stores.rag.embedder import Embedder
from michi_core.stores.rag.extract import SUPPORTED_SUFFIXES, ExtractionError, extract
from michi_core.stores.rag.store import DocumentStore, DuplicateDocument

log = logging.getLogger(__name__)

# Above this a file is refused unread: embedding 100 MB of text would take hours on a laptop,
# and bigger PDFs are nearly always scans, which hold no text anyway.
MAX_FILE_BYTES = 100 * 1024 * 1024

INDEXED, DUPLICATE, FAILED, CANCELLED = "indexed", "duplicate", "failed", "cancelled"


@dataclass(frozen=True)
class IngestProgress:
    path: Path
    file_index: int  # 0-based position in the batch
    file_count: int
    stage: str  # "reading", "chunking", "embedding" or "saving", in that order
    fraction: float  # 0..1: how much of this file is embedded (0 before, 1 when saving)


@dataclass(frozen=True)
class IngestResult:
    path: Path
    status: str  # INDEXED, DUPLICATE, FAILED or CANCELLED
    message: str | None = None  # why it failed / what it duplicates / notes on how it was read
    document_id: int | None = None  # the stored document (for DUPLICATE: the existing one)
    chunk_count: int = 0
    page_count: int | None = None
    seconds: float = 0.0


class _Refused(Exception):
    """A file this ingester will not index; recorded in the store unless it never existed."""

    def __init__(self, message: str, record: bool = True, size: int | None = None,
                 content_hash: str | None = None):
        super().__init__(message)
        self.record, self.size, self.content_hash = record, size, content_hash


class _Stopped(Exception):
    """should_stop() turned true before the file was saved."""


def expand_paths(paths: Iterable[Path | str]) -> list[Path]:
    """Files as given; a folder becomes the supported files inside it, recursively, sorted."""
    expanded = []
    for path in map(Path, paths):
        if path.is_dir():
            expanded.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in SUPPORTED_SUFFIXES
                                   and p.is_file()))
        else:
            expanded.append(path)
    return expanded


class Ingestor:
    def __init__(
        self,
        store: DocumentStore,
        embedder: Embedder,
        chunking: ChunkingConfig = ChunkingConfig(),
        max_file_bytes: int = MAX_FILE_BYTES,
        embed_batch: int = 16,  # chunks per embedding call: how often progress and stop are checked
    ):
        assert chunking.max_tokens <= embedder.max_tokens - 2, (
            "chunks must fit the embedder with its [CLS] and [SEP] tokens, or their ends go unseen"
        )
        self.store = store
        self.embedder = embedder
        self.chunking = chunking
        self.max_file_bytes = max_file_bytes
        self.embed_batch = embed_batch

    def ingest(
        self,
        paths: Sequence[Path | str],
        on_progress: Callable[[IngestProgress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_result: Callable[[IngestResult], None] | None = None,
    ) -> list[IngestResult]:
        """Index each file in turn, reporting each result as soon as it is known. When
        should_stop() turns true the current file is abandoned (nothing of it written), it gets
        a CANCELLED result and the batch ends there."""
        results = []
        for index, path in enumerate(map(Path, paths)):
            report = _Reporter(path, index, len(paths), on_progress)
            result = self.ingest_file(path, report, should_stop or (lambda: False))
            log.debug("%s: %s%s", path, result.status, f" ({result.message})" if result.message else "")
            results.append(result)
            if on_result is not None:
                on_result(result)
            if result.status == CANCELLED:
                break
        return results

    def ingest_file(
        self, path: Path, report: Callable[[str, float], None], should_stop: Callable[[], bool]
    ) -> IngestResult:
        started = time.monotonic()
        path = path.expanduser().absolute()
        try:
            result = self._ingest(path, report, should_stop)
        except _Stopped:
            result = IngestResult(path, CANCELLED, "stopped before it was saved")
        except _Refused as refusal:
            result = self._failed(path, str(refusal), refusal)
        except Exception as error:  # a bug must not cost the rest of the batch
            log.exception("unexpected error while indexing %s", path)
            result = self._failed(path, f"unexpected error ({type(error).__name__}: {error}); "
                                        "please report it", _Refused(str(error)))
        return dataclasses.replace(result, seconds=time.monotonic() - started)

    def _ingest(self, path: Path, report, should_stop) -> IngestResult:
        data, size = self._read(path, report)
        content_hash = hashlib.sha256(data).hexdigest()
        existing = self.store.indexed_with_hash(content_hash)
        if existing is not None:
            return IngestResult(path, DUPLICATE, f"same content as #{existing.id} ({existing.title})",
                                existing.id, existing.chunk_count, existing.page_count)
        try:
            extracted = extract(path, data)
        except ExtractionError as error:
            raise _Refused(str(error), size=size, content_hash=content_hash) from error

        report("chunking", 0.0)
        spans = chunk_text(extracted.text, self.embedder.count_tokens, self.chunking, extracted.page_starts)
        texts = [extracted.text[span.start : span.end] for span in spans]
        vectors = []
        for start in range(0, len(texts), self.embed_batch):
            if should_stop():
                raise _Stopped
            report("embedding", start / len(texts))
            vectors.extend(self.embedder.embed(texts[start : start + self.embed_batch]))
        if should_stop():
            raise _Stopped

        report("saving", 1.0)
        message = "; ".join(extracted.notes) or None
        try:
            document = self.store.add_document(
                path=str(path), title=extracted.title or path.name, content_hash=content_hash,
                size_bytes=size, page_count=extracted.page_count, message=message, chunks=spans,
                texts=texts, vectors=vectors, embedding_model=self.embedder.name,
            )
        except DuplicateDocument as duplicate:  # indexed meanwhile by another process
            existing = duplicate.existing
            return IngestResult(path, DUPLICATE, str(duplicate), existing.id, existing.chunk_count,
                                existing.page_count)
        return IngestResult(path, INDEXED, message, document.id, document.chunk_count, document.page_count)

    def _read(self, path: Path, report: Callable[[str, float], None]) -> tuple[bytes, int]:
        """The file's bytes, refusing folders, unknown types and oversize files before reading."""
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise _Refused("file not found: check the path", record=False) from None
        except OSError as error:
            raise _Refused(f"cannot access the file ({error.strerror})") from error
        if path.is_dir():
            raise _Refused("this is a folder, not a document: add the files inside it", record=False)
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            raise _Refused(f"unsupported file type '{path.suffix or path.name}': Michi reads "
                           f"{', '.join(SUPPORTED_SUFFIXES)}", size=size)
        if size > self.max_file_bytes:
            raise _Refused(f"the file is {_megabytes(size)}; Michi indexes files up to "
                           f"{_megabytes(self.max_file_bytes)}: split it into smaller files", size=size)
        report("reading", 0.0)
        try:
            with open(path, "rb") as file:
                data = file.read(self.max_file_bytes + 1)  # bounded even if it grew since stat()
        except FileNotFoundError:
            raise _Refused("the file disappeared before it could be read (moved or deleted?)",
                           size=size) from None
        except OSError as error:
            raise _Refused(f"the file could not be read ({error.strerror})", size=size) from error
        if len(data) > self.max_file_bytes:
            raise _Refused(f"the file grew past {_megabytes(self.max_file_bytes)} while being read",
                           size=len(data))
        return data, len(data)

    def _failed(self, path: Path, message: str, refusal: _Refused) -> IngestResult:
        if not refusal.record:
            return IngestResult(path, FAILED, message)
        try:
            document = self.store.record_failure(path=str(path), title=path.name, message=message,
                                                 size_bytes=refusal.size, content_hash=refusal.content_hash)
        except sqlite3.Error:  # e.g. the disk is full: still report the file, and go on
            log.exception("could not record the failure of %s", path)
            return IngestResult(path, FAILED, message)
        return IngestResult(path, FAILED, message, document.id)


class _Reporter:
    """Turns (stage, fraction) calls from one file into IngestProgress events for the batch."""

    def __init__(self, path: Path, index: int, count: int, on_progress):
        self.path, self.index, self.count, self.on_progress = path, index, count, on_progress

    def __call__(self, stage: str, fraction: float) -> None:
        if self.on_progress is not None:
            self.on_progress(IngestProgress(self.path, self.index, self.count, stage, fraction))


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB" if size < 10**9 else f"{size / 1_000_000_000:.2f} GB"
