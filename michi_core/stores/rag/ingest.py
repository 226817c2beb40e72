"""Ingestion: file -> checked bytes -> text -> chunks -> vectors -> one committed document.

Each file of a batch ends with its own `IngestResult`; a bad file never stops the others.
The type and size are checked before a byte is read (a FIFO or a device is refused unread: it
would block forever). The file is opened once and read twice through that one handle: a first
pass hashes it (a duplicate is found before any work) and, for plain text, judges its encoding;
the second pass extracts, and must hash the same or the file changed while being read.

Memory stays bounded whatever the length: plain text is decoded, chunked, embedded and written
a section and a batch at a time (other formats are extracted whole, within MAX_FILE_BYTES, then
go the same way). The batches of a document are invisible until its last one is in and the
document is switched to indexed, so stopping or killing the process mid-file loses only that
file (what it had written is removed, at once or when a store is next opened).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import sqlite3
import stat
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from michi_core.stores.database import StoreError
from michi_core.stores.rag.chunking import ChunkingConfig, ChunkSpan, chunk_text
from michi_core.stores.rag.embedder import Embedder
from michi_core.stores.rag.extract import (
    SUPPORTED_SUFFIXES,
    TEXT_SUFFIXES,
    EncodingProbe,
    ExtractionError,
    extract,
    markdown_title,
    split_sections,
    text_sections,
)
from michi_core.stores.rag.store import FAILED, INDEXED, DocumentStore, DuplicateDocument

log = logging.getLogger(__name__)

# Above this a file is refused unread: embedding 100 MB of text would take hours on a laptop,
# and bigger PDFs are nearly always scans, which hold no text anyway.
MAX_FILE_BYTES = 100 * 1024 * 1024

# An IngestResult's status: INDEXED or FAILED (the document statuses of the store), or one of these.
DUPLICATE, CANCELLED = "duplicate", "cancelled"
READ_BLOCK_BYTES = 1 << 20


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


DEFAULT_CHUNKING = ChunkingConfig()  # frozen: one shared default is safe


class Ingestor:
    def __init__(
        self,
        store: DocumentStore,
        embedder: Embedder,
        chunking: ChunkingConfig = DEFAULT_CHUNKING,
        max_file_bytes: int = MAX_FILE_BYTES,
        embed_batch: int = 16,  # chunks per embedding call: how often progress and stop are checked
        commit_batch: int = 512,  # chunks per write transaction: bounds memory and lock time
    ):
        assert chunking.max_tokens <= embedder.max_tokens - 2, (
            "chunks must fit the embedder with its [CLS] and [SEP] tokens, or their ends go unseen"
        )
        self.store = store
        self.embedder = embedder
        self.chunking = chunking
        self.max_file_bytes = max_file_bytes
        self.embed_batch = embed_batch
        self.commit_batch = max(commit_batch, embed_batch)

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
        except StoreError as error:  # the database is read-only or damaged: nothing can be recorded
            result = IngestResult(path, FAILED, str(error))
        except Exception as error:  # a bug must not cost the rest of the batch
            log.exception("unexpected error while indexing %s", path)
            result = self._failed(path, f"unexpected error ({type(error).__name__}: {error}); "
                                        "please report it", _Refused(str(error)))
        return dataclasses.replace(result, seconds=time.monotonic() - started)

    def _ingest(self, path: Path, report, should_stop) -> IngestResult:
        size = self._check(path)
        report("reading", 0.0)
        try:
            # Non-blocking: were the path swapped for a FIFO since stat(), open() would wait forever.
            descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            raise _Refused("the file disappeared before it could be read (moved or deleted?)", size=size) from None
        except OSError as error:
            raise _Refused(f"the file could not be read ({error.strerror})", size=size) from error
        file = os.fdopen(descriptor, "rb")
        with file:
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):
                raise _Refused("this is not a regular file (a pipe, a socket or a device): Michi indexes "
                               "documents saved on disk", record=False)
            text_file = path.suffix.lower() in TEXT_SUFFIXES
            probe = EncodingProbe() if text_file else None
            content_hash, size = self._hash(file, probe)
            existing = self.store.indexed_with_hash(content_hash)
            if existing is not None:
                return IngestResult(path, DUPLICATE, f"same content as #{existing.id} ({existing.title})",
                                    existing.id, existing.chunk_count, existing.page_count)
            file.seek(0)
            rehash = hashlib.sha256()
            try:
                if text_file:
                    encoding, notes = probe.finish()
                    sections = _text_with_offsets(text_sections(_blocks(file, rehash), encoding), file, size)
                    title, page_starts, page_count = None, None, None
                else:
                    data = file.read(self.max_file_bytes + 1)
                    rehash.update(data)
                    extracted = extract(path, data)
                    del data
                    title, page_starts, page_count = extracted.title, extracted.page_starts, extracted.page_count
                    notes, text = extracted.notes, extracted.text
                    sections = ((offset, piece, (offset + len(piece)) / len(text))
                                for offset, piece in split_sections(text))
                return self._index(path, size, content_hash, rehash, sections, title, page_starts,
                                   page_count, notes, report, should_stop)
            except ExtractionError as error:
                raise _Refused(str(error), size=size, content_hash=content_hash) from error

    def _index(self, path: Path, size: int, content_hash: str, rehash, sections, title: str | None,
               page_starts: list[int] | None, page_count: int | None, notes: list[str], report,
               should_stop) -> IngestResult:
        """Chunk, embed and write the sections a batch at a time into a document kept invisible
        until it is whole; any failure or a stop removes what was written of it."""
        report("chunking", 0.0)
        document_id = None
        written = 0
        reported = section_start = 0.0  # progress: the fraction reported so far, where this section began
        pending_spans: list[ChunkSpan] = []
        pending_texts: list[str] = []
        try:
            for offset, piece, done in sections:
                if title is None and offset == 0 and path.suffix.lower() in (".md", ".markdown"):
                    title = markdown_title(piece)
                spans = chunk_text(piece, self.embedder.count_tokens, self.chunking)
                for number, span in enumerate(spans, start=1):
                    start = offset + span.start
                    pending_spans.append(ChunkSpan(start, offset + span.end, span.token_count,
                                                   bisect_right(page_starts, start) if page_starts else None))
                    pending_texts.append(piece[span.start : span.end])
                    if len(pending_spans) >= self.commit_batch:
                        if document_id is None:
                            document_id = self._begin(path, title, content_hash, size)
                        target = section_start + (done - section_start) * number / len(spans)
                        written = self._write_batch(document_id, written, pending_spans, pending_texts,
                                                    report, should_stop, reported, target)
                        reported = target
                        pending_spans, pending_texts = [], []
                section_start = done
            if not written and not pending_spans:
                raise ExtractionError("no text found in the file")
            if document_id is None:
                document_id = self._begin(path, title, content_hash, size)
            written = self._write_batch(document_id, written, pending_spans, pending_texts, report,
                                        should_stop, reported, 1.0)
            if should_stop():
                raise _Stopped
            if rehash.hexdigest() != content_hash:
                raise _Refused("the file changed while it was being read: add it again once it is saved",
                               size=size)
            report("saving", 1.0)
            message = "; ".join(notes) or None
            document = self.store.finish_document(document_id, chunk_count=written, page_count=page_count,
                                                  message=message)
            document_id = None  # it is the store's now
        except DuplicateDocument as duplicate:  # indexed meanwhile by another process
            document_id = None
            existing = duplicate.existing
            return IngestResult(path, DUPLICATE, str(duplicate), existing.id, existing.chunk_count,
                                existing.page_count)
        finally:
            if document_id is not None:
                self._abandon(document_id)
        return IngestResult(path, INDEXED, message, document.id, document.chunk_count, document.page_count)

    def _begin(self, path: Path, title: str | None, content_hash: str, size: int) -> int:
        return self.store.begin_document(path=str(path), title=title or path.name, content_hash=content_hash,
                                         size_bytes=size, embedding_model=self.embedder.name)

    def _write_batch(self, document_id: int, written: int, spans: list[ChunkSpan], texts: list[str],
                     report, should_stop, from_fraction: float, to_fraction: float) -> int:
        """Embed one batch (checking for a stop between embedding calls) and write it; returns
        how many chunks of the document are written. Progress goes from_fraction -> to_fraction."""
        vectors = []
        for start in range(0, len(texts), self.embed_batch):
            if should_stop():
                raise _Stopped
            report("embedding", from_fraction + (to_fraction - from_fraction) * start / len(texts))
            vectors.extend(self.embedder.embed(texts[start : start + self.embed_batch]))
        if texts:
            self.store.add_chunks(document_id, written, spans, texts, vectors)
        return written + len(texts)

    def _abandon(self, document_id: int) -> None:
        try:
            self.store.abandon_document(document_id)
        except sqlite3.Error:  # e.g. the disk is full: the next store opened removes it
            log.exception("could not remove the half-written document #%d", document_id)

    def _check(self, path: Path) -> int:
        """The file's size, refusing folders, FIFOs and devices, unknown types and oversize files
        before reading."""
        try:
            info = path.stat()
        except FileNotFoundError:
            raise _Refused("file not found: check the path", record=False) from None
        except OSError as error:
            raise _Refused(f"cannot access the file ({error.strerror})") from error
        if stat.S_ISDIR(info.st_mode):
            raise _Refused("this is a folder, not a document: add the files inside it", record=False)
        if not stat.S_ISREG(info.st_mode):
            raise _Refused("this is not a regular file (a pipe, a socket or a device): Michi indexes "
                           "documents saved on disk", record=False)
        size = info.st_size
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            raise _Refused(f"unsupported file type '{path.suffix or path.name}': Michi reads "
                           f"{', '.join(SUPPORTED_SUFFIXES)}", size=size)
        if size > self.max_file_bytes:
            raise _Refused(f"the file is {_megabytes(size)}; Michi indexes files up to "
                           f"{_megabytes(self.max_file_bytes)}: split it into smaller files", size=size)
        return size

    def _hash(self, file, probe: EncodingProbe | None) -> tuple[str, int]:
        """First pass: SHA-256 and size of what the handle reads (bounded even if the file grew
        since stat()), the encoding probe fed on the way."""
        digest = hashlib.sha256()
        size = 0
        try:
            for block in iter(lambda: file.read(READ_BLOCK_BYTES), b""):
                size += len(block)
                if size > self.max_file_bytes:
                    raise _Refused(f"the file grew past {_megabytes(self.max_file_bytes)} while being read",
                                   size=size)
                digest.update(block)
                if probe is not None:
                    probe.feed(block)
        except OSError as error:
            raise _Refused(f"the file could not be read ({error.strerror})", size=size) from error
        if size == 0:
            raise _Refused("the file is empty", size=0, content_hash=digest.hexdigest())
        return digest.hexdigest(), size

    def _failed(self, path: Path, message: str, refusal: _Refused) -> IngestResult:
        if not refusal.record:
            return IngestResult(path, FAILED, message)
        try:
            document = self.store.record_failure(path=str(path), title=path.name, message=message,
                                                 size_bytes=refusal.size, content_hash=refusal.content_hash)
        except (sqlite3.Error, StoreError):  # e.g. the disk is full: still report the file, and go on
            log.exception("could not record the failure of %s", path)
            return IngestResult(path, FAILED, message)
        return IngestResult(path, FAILED, message, document.id)


def _blocks(file, digest) -> Iterator[bytes]:
    """The second pass over an open file, hashed as it goes."""
    for block in iter(lambda: file.read(READ_BLOCK_BYTES), b""):
        digest.update(block)
        yield block


def _text_with_offsets(pieces: Iterator[str], file, size: int) -> Iterator[tuple[int, str, float]]:
    """(offset, piece, fraction of the file read) of streamed text pieces joined by blank lines."""
    offset = 0
    for piece in pieces:
        yield offset, piece, min(file.tell() / max(size, 1), 1.0)
        offset += len(piece) + 2


class _Reporter:
    """Turns (stage, fraction) calls from one file into IngestProgress events for the batch."""

    def __init__(self, path: Path, index: int, count: int, on_progress):
        self.path, self.index, self.count, self.on_progress = path, index, count, on_progress

    def __call__(self, stage: str, fraction: float) -> None:
        if self.on_progress is not None:
            self.on_progress(IngestProgress(self.path, self.index, self.count, stage, fraction))


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB" if size < 10**9 else f"{size / 1_000_000_000:.2f} GB"
