"""The document store: documents, their chunks (FTS5-indexed) and chunk embeddings in SQLite.

It lives in Michi's one database (`paths.database_path()`), next to the voice and conversation
tables, which is why every table here is named for what it holds. WAL mode lets the GUI read
while an ingest thread or the CLI writes. A document and everything derived from it is written
in one transaction, so a crash or a kill mid-ingest leaves either the whole document or none of
it, and never touches documents indexed before.

A store object belongs to the thread that opened it (sqlite3's rule); other threads open their
own on the same path.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from michi_core.stores.database import SqliteStore
from michi_core.stores.rag.chunking import ChunkSpan

log = logging.getLogger(__name__)

# The statuses a stored document can have. INDEXING: its chunks are being written in batches by
# the process `indexing_pid`; it is never listed nor searched, and is dropped if that process died.
INDEXED, FAILED, INDEXING = "indexed", "failed", "indexing"


@dataclass(frozen=True)
class Document:
    id: int
    path: str
    title: str
    content_hash: str | None  # SHA-256 of the file's bytes; None when the file could not be read
    size_bytes: int | None
    status: str  # INDEXED or FAILED
    message: str | None  # why it failed, or what to know about how it was read
    enabled: bool  # disabled documents stay stored but are never retrieved
    added_at: str  # ISO 8601, UTC
    page_count: int | None  # PDFs only
    chunk_count: int
    embedding_model: str | None


@dataclass(frozen=True)
class StoredChunk:
    id: int
    document_id: int
    text: str
    char_start: int  # offsets into the document's extracted text
    char_end: int
    page: int | None
    title: str  # of its document, for showing and citing the passage
    path: str
    content_hash: str  # lets a saved link check it still points at the same content


class DuplicateDocument(Exception):
    """The same content is already indexed; `existing` is that document."""

    def __init__(self, existing: Document):
        super().__init__(f"same content as document #{existing.id} ({existing.title})")
        self.existing = existing


class DocumentStore(SqliteStore):
    def __init__(self, path: Path | str | None = None):
        super().__init__(path)
        self._writes = 0  # our own commits; PRAGMA data_version only counts other connections'
        self._vector_cache: tuple[tuple, np.ndarray, np.ndarray] | None = None
        if self.writable:
            self._drop_interrupted()

    def _create_schema(self) -> None:
        with self.write():
            # Plain SQL for these two: sqlite-utils cannot declare AUTOINCREMENT, and without it SQLite
            # reuses the ids of removed rows, so a transcript's link to a removed passage would
            # silently point at a newer one.
            self.db.execute("""
                CREATE TABLE IF NOT EXISTS documents (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    path TEXT NOT NULL,
                    title TEXT NOT NULL,
                    content_hash TEXT,
                    size_bytes INTEGER,
                    status TEXT NOT NULL,
                    message TEXT,
                    enabled INTEGER NOT NULL,
                    added_at TEXT NOT NULL,
                    page_count INTEGER,
                    chunk_count INTEGER NOT NULL,
                    embedding_model TEXT
                )""")
            # One indexed copy of any content; failed attempts may repeat.
            self.db.execute(
                "CREATE UNIQUE INDEX IF NOT EXISTS documents_indexed_hash "
                f"ON documents(content_hash) WHERE status = '{INDEXED}'"
            )
            self.db["documents"].create_index(["path"], if_not_exists=True)
            self.db.execute("""
                CREATE TABLE IF NOT EXISTS chunks (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    document_id INTEGER NOT NULL REFERENCES documents(id),
                    ordinal INTEGER NOT NULL,
                    text TEXT NOT NULL,
                    char_start INTEGER NOT NULL,
                    char_end INTEGER NOT NULL,
                    page INTEGER,
                    token_count INTEGER
                )""")
            if "indexing_pid" not in self.db["documents"].columns_dict:  # databases from before batches
                self.db.execute("ALTER TABLE documents ADD COLUMN indexing_pid INTEGER")
            self.db["chunks"].create_index(["document_id", "ordinal"], if_not_exists=True)
            self.db["chunk_embeddings"].create(
                {"chunk_id": int, "vector": bytes},  # float32, little-endian, the model's dim
                pk="chunk_id",
                not_null={"vector"},
                foreign_keys=[("chunk_id", "chunks", "id")],
                if_not_exists=True,
            )
            if not self.db["chunks_fts"].exists():
                # Porter stemming: "charging" in a question finds "charge" in a manual.
                self.db["chunks"].enable_fts(["text"], create_triggers=True, tokenize="porter")

    def _drop_interrupted(self) -> None:
        """Remove documents left half-written by a process that died (killed, crashed, power cut)."""
        rows = self.db.execute("SELECT id, indexing_pid FROM documents WHERE status = ?", [INDEXING]).fetchall()
        dead = [document_id for document_id, pid in rows if not _alive(pid)]
        if dead:
            log.info("removing %d document(s) left half-indexed by a process that ended", len(dead))
            with self.write():
                self._delete(dead)
            self._writes += 1

    # -- reading ---------------------------------------------------------------------------

    def documents(self) -> list[Document]:
        """Indexed and failed documents (not those still being written), oldest first."""
        rows = self.db.query("SELECT * FROM documents WHERE status != ? ORDER BY id", [INDEXING])
        return [_document(row) for row in rows]

    def document(self, document_id: int) -> Document | None:
        rows = list(self.db.query("SELECT * FROM documents WHERE id = ?", [document_id]))
        return _document(rows[0]) if rows else None

    def indexed_with_hash(self, content_hash: str) -> Document | None:
        rows = list(self.db.query(
            "SELECT * FROM documents WHERE content_hash = ? AND status = ?", [content_hash, INDEXED]
        ))
        return _document(rows[0]) if rows else None

    def chunks_by_id(self, chunk_ids: Iterable[int]) -> dict[int, StoredChunk]:
        ids = list(chunk_ids)
        if not ids:
            return {}
        rows = self.db.query(
            "SELECT c.id, c.document_id, c.text, c.char_start, c.char_end, c.page, "
            "d.title, d.path, d.content_hash FROM chunks c JOIN documents d ON d.id = c.document_id "
            f"WHERE c.id IN ({', '.join('?' * len(ids))})",
            ids,
        )
        return {row["id"]: StoredChunk(**row) for row in rows}

    def keyword_search(self, query: str, limit: int) -> list[int]:
        """Chunk ids of enabled documents, best BM25 match first. Any words a user types are safe."""
        words = [word.lower() for word in _words(query)]
        if not words:
            return []
        # Any of the words, plus the whole query as a phrase: names, codes and e-mail addresses
        # typed in full then outrank chunks that merely repeat one of their words.
        alternatives = dict.fromkeys([" ".join(words)] + words)
        match = " OR ".join(f'"{alternative}"' for alternative in alternatives)
        rows = self.db.execute(
            "SELECT c.id FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
            "JOIN documents d ON d.id = c.document_id "
            "WHERE chunks_fts MATCH ? AND d.enabled = 1 AND d.status = ? "
            "ORDER BY bm25(chunks_fts) LIMIT ?",
            [match, INDEXED, limit],
        )
        return [chunk_id for (chunk_id,) in rows]

    def vector_index(self, embedding_model: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids (N,), unit vectors (N, dim)) of enabled documents embedded by that model.

        Kept in memory between searches and reloaded only after a write, so a query costs one
        matrix product instead of reading every vector from disk.
        """
        (data_version,) = self.db.execute("PRAGMA data_version").fetchone()
        key = (data_version, self._writes, embedding_model, dim)
        if self._vector_cache is None or self._vector_cache[0] != key:
            rows = self.db.execute(
                "SELECT e.chunk_id, e.vector FROM chunk_embeddings e "
                "JOIN chunks c ON c.id = e.chunk_id JOIN documents d ON d.id = c.document_id "
                "WHERE d.enabled = 1 AND d.status = ? AND d.embedding_model = ? ORDER BY e.chunk_id",
                [INDEXED, embedding_model],
            ).fetchall()
            ids = np.array([chunk_id for chunk_id, _ in rows], dtype=np.int64)
            matrix = np.frombuffer(b"".join(blob for _, blob in rows), dtype="<f4").reshape(len(rows), dim)
            self._vector_cache = (key, ids, matrix)
        return self._vector_cache[1], self._vector_cache[2]

    # -- writing ---------------------------------------------------------------------------

    def add_document(
        self,
        *,
        path: str,
        title: str,
        content_hash: str,
        size_bytes: int,
        page_count: int | None,
        message: str | None,
        chunks: Sequence[ChunkSpan],
        texts: Sequence[str],
        vectors: np.ndarray,
        embedding_model: str,
    ) -> Document:
        """Store one whole indexed document with its chunks and vectors, in one transaction
        (what `begin_document`, `add_chunks` and `finish_document` do in batches)."""
        with self.write():
            document_id = self.begin_document(path=path, title=title, content_hash=content_hash,
                                              size_bytes=size_bytes, embedding_model=embedding_model)
            self.add_chunks(document_id, 0, chunks, texts, vectors)
            return self.finish_document(document_id, chunk_count=len(chunks), page_count=page_count,
                                        message=message)

    def begin_document(self, *, path: str, title: str, content_hash: str, size_bytes: int,
                       embedding_model: str) -> int:
        """Start writing a document whose chunks come in batches; it stays invisible (INDEXING)
        until `finish_document`. Raises DuplicateDocument when this content is indexed already."""
        with self.write():
            existing = self.indexed_with_hash(content_hash)
            if existing is not None:
                raise DuplicateDocument(existing)
            document_id = self.db["documents"].insert({
                "path": path, "title": title, "content_hash": content_hash, "size_bytes": size_bytes,
                "status": INDEXING, "message": None, "enabled": 1, "added_at": _now(),
                "page_count": None, "chunk_count": 0, "embedding_model": embedding_model,
                "indexing_pid": os.getpid(),
            }).last_pk
        return document_id

    def add_chunks(self, document_id: int, first_ordinal: int, chunks: Sequence[ChunkSpan],
                   texts: Sequence[str], vectors: np.ndarray) -> None:
        """One batch of a document's chunks with their texts and vectors, in one transaction."""
        assert len(chunks) == len(texts) == len(vectors), "one text and one vector per chunk"
        vectors = np.ascontiguousarray(vectors, dtype="<f4")
        with self.write():
            self.db["chunks"].insert_all(
                {"document_id": document_id, "ordinal": first_ordinal + i, "text": text,
                 "char_start": span.start, "char_end": span.end, "page": span.page,
                 "token_count": span.token_count}
                for i, (span, text) in enumerate(zip(chunks, texts))
            )
            chunk_ids = [row[0] for row in self.db.execute(
                "SELECT id FROM chunks WHERE document_id = ? AND ordinal >= ? ORDER BY ordinal",
                [document_id, first_ordinal])]
            self.db["chunk_embeddings"].insert_all(
                {"chunk_id": chunk_id, "vector": vector.tobytes()}
                for chunk_id, vector in zip(chunk_ids, vectors)
            )

    def finish_document(self, document_id: int, *, chunk_count: int, page_count: int | None,
                        message: str | None) -> Document:
        """Make a document begun with `begin_document` searchable, in place of what was stored for
        its path (a re-added, edited file). Raises DuplicateDocument (and drops this one) when the
        same content was indexed meanwhile, by another process."""
        with self.write():
            row = self.db.execute("SELECT path, content_hash FROM documents WHERE id = ? AND status = ?",
                                  [document_id, INDEXING]).fetchone()
            assert row is not None, f"document #{document_id} is not being indexed"
            path, content_hash = row
            existing = self.indexed_with_hash(content_hash)
            if existing is not None:
                self._delete([document_id])
                raise DuplicateDocument(existing)
            self._delete(other for (other,) in self.db.execute(
                "SELECT id FROM documents WHERE path = ? AND id != ? AND status != ?",
                [path, document_id, INDEXING]).fetchall())
            self.db.execute(
                "UPDATE documents SET status = ?, chunk_count = ?, page_count = ?, message = ?, "
                "indexing_pid = NULL WHERE id = ?", [INDEXED, chunk_count, page_count, message, document_id])
        self._writes += 1
        log.debug("indexed #%d %s: %d chunks", document_id, path, chunk_count)
        return self.document(document_id)

    def abandon_document(self, document_id: int) -> None:
        """Drop a document that was being indexed (stopped, or failed half way)."""
        with self.write():
            self._delete([document_id])

    def record_failure(
        self, *, path: str, title: str, message: str, size_bytes: int | None = None,
        content_hash: str | None = None,
    ) -> Document:
        """Remember a file that could not be indexed (replacing an earlier failure of that path),
        so the panel and `michi docs list` show why; an indexed copy of the path is kept."""
        with self.write():
            self._delete(row["id"] for row in self.db.query(
                "SELECT id FROM documents WHERE path = ? AND status = ?", [path, FAILED]
            ))
            document_id = self.db["documents"].insert({
                "path": path, "title": title, "content_hash": content_hash, "size_bytes": size_bytes,
                "status": FAILED, "message": message, "enabled": 1, "added_at": _now(),
                "page_count": None, "chunk_count": 0, "embedding_model": None, "indexing_pid": None,
            }).last_pk
        self._writes += 1
        return self.document(document_id)

    def set_enabled(self, document_id: int, enabled: bool) -> None:
        with self.write():
            self.db.execute("UPDATE documents SET enabled = ? WHERE id = ?", [int(enabled), document_id])
        self._writes += 1

    def remove(self, document_id: int) -> bool:
        """Delete a document with its chunks and vectors; False when there was no such document."""
        with self.write():
            found = self.document(document_id) is not None
            self._delete([document_id])
        self._writes += 1
        return found

    def _delete(self, document_ids: Iterable[int]) -> None:
        for document_id in list(document_ids):
            self.db.execute(
                "DELETE FROM chunk_embeddings "
                "WHERE chunk_id IN (SELECT id FROM chunks WHERE document_id = ?)",
                [document_id],
            )
            self.db.execute("DELETE FROM chunks WHERE document_id = ?", [document_id])
            self.db.execute("DELETE FROM documents WHERE id = ?", [document_id])


def _document(row: dict) -> Document:
    row = dict(row)
    row.pop("indexing_pid", None)
    return Document(**{**row, "enabled": bool(row["enabled"])})


def _alive(pid: int | None) -> bool:
    """Whether a process with this id runs on this machine (Michi's database is per user, local)."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive, not ours to judge
        return True
    except (OverflowError, OSError):
        return False
    return True


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _words(text: str) -> list[str]:
    """Word tokens for an FTS5 query; quoting each one keeps FTS5 syntax out of user text."""
    return re.findall(r"\w+", text)
