"""The document store on real SQLite files: schema, one-transaction writes, removal, enabling,
failures, and the in-memory vector index staying in step with other connections' writes."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from michi_core.paths import database_path
from michi_core.stores.rag.chunking import ChunkSpan
from michi_core.stores.rag.store import FAILED, INDEXED, DocumentStore, DuplicateDocument

DIM = 8


def add(store: DocumentStore, name: str, sentences: list[str], seed: int = 0,
        content_hash: str | None = None):
    """Store a document whose chunks are the given sentences, with random unit vectors."""
    text, spans = "", []
    for sentence in sentences:
        start = len(text)
        text += sentence + " "
        spans.append(ChunkSpan(start, start + len(sentence), len(sentence.split()), None))
    vectors = np.random.default_rng(seed).normal(size=(len(sentences), DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return store.add_document(
        path=f"/docs/{name}", title=name, content_hash=content_hash or f"hash-of-{name}",
        size_bytes=len(text), page_count=None, message=None, chunks=spans, texts=sentences,
        vectors=vectors, embedding_model="test-model",
    )


@pytest.fixture
def store(tmp_path):
    with DocumentStore(tmp_path / "michi.sqlite3") as store:
        yield store


def test_default_location_is_the_shared_database(michi_home):
    with DocumentStore() as store:
        assert store.path == database_path()
        assert str(store.path).startswith(str(michi_home))


def test_schema_wal_and_tables(store):
    tables = set(store.db.table_names())
    assert {"documents", "chunks", "chunks_fts", "chunk_embeddings"} <= tables
    assert store.db.journal_mode == "wal"
    assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    DocumentStore(store.path).close()  # opening an existing database again is harmless


def test_add_writes_document_chunks_fts_and_float32_vectors(store):
    document = add(store, "boats.txt", ["The ferry leaves at nine.", "Tickets cost four euros."])
    assert document.status == INDEXED and document.enabled and document.chunk_count == 2
    rows = store.db.execute("SELECT id, text, char_start, char_end FROM chunks ORDER BY ordinal").fetchall()
    assert [text for _, text, _, _ in rows] == ["The ferry leaves at nine.", "Tickets cost four euros."]
    assert store.keyword_search("ferry", 5) == [rows[0][0]]
    assert store.keyword_search("ticket", 5) == [rows[1][0]], "porter stemming: ticket finds Tickets"
    (blob,) = store.db.execute(
        "SELECT vector FROM chunk_embeddings WHERE chunk_id = ?", [rows[0][0]]).fetchone()
    assert len(blob) == DIM * 4
    ids, matrix = store.vector_index("test-model", DIM)
    assert list(ids) == [rows[0][0], rows[1][0]] and matrix.dtype == np.float32 and matrix.shape == (2, DIM)
    assert store.vector_index("another-model", DIM)[0].size == 0, "another model's vectors are never compared"


def test_fts_queries_are_safe_for_any_user_text(store):
    add(store, "a.txt", ['He said "hello" (twice) AND left -- NEAR the door*.'])
    for query in ['"unbalanced', "AND OR NOT", "NEAR(", "*", "door*", "col:hello", "", "   ", "ünïcödé"]:
        store.keyword_search(query, 5)  # must not raise an FTS5 syntax error
    assert store.keyword_search('hello" OR "x', 5), "quotes in the query are not FTS syntax"


def test_duplicate_content_is_refused_inside_the_transaction(store):
    first = add(store, "a.txt", ["Same words."], content_hash="abc")
    with pytest.raises(DuplicateDocument) as error:
        add(store, "b.txt", ["Same words."], content_hash="abc")
    assert error.value.existing.id == first.id
    assert [d.title for d in store.documents()] == ["a.txt"]
    assert store.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0] == 1, "nothing of b.txt written"


def test_remove_deletes_chunks_fts_rows_and_vectors_and_never_reuses_ids(store):
    keep = add(store, "keep.txt", ["Bananas are yellow."])
    gone = add(store, "gone.txt", ["Cherries are red.", "Cherries grow on trees."], seed=1)
    assert store.remove(gone.id) is True
    assert store.remove(gone.id) is False
    assert store.keyword_search("cherries", 5) == []
    assert store.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0] == 1
    assert store.db.execute("SELECT COUNT(*) FROM chunk_embeddings").fetchone()[0] == 1
    store.db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')")
    assert [d.id for d in store.documents()] == [keep.id]
    newer = add(store, "newer.txt", ["Dates are brown."], seed=2)
    assert newer.id > gone.id, "a removed document's id must not come back"
    assert min(store.chunks_by_id(store.keyword_search("dates", 5))) > 3


def test_disabled_documents_are_stored_but_not_retrieved(store):
    document = add(store, "secret.txt", ["The vault code is 7319."])
    store.set_enabled(document.id, False)
    assert store.keyword_search("vault", 5) == []
    assert store.vector_index("test-model", DIM)[0].size == 0
    assert store.document(document.id).enabled is False
    store.set_enabled(document.id, True)
    assert len(store.keyword_search("vault", 5)) == 1
    assert store.vector_index("test-model", DIM)[0].size == 1


def test_failures_are_recorded_once_per_path_and_never_retrieved(store):
    store.record_failure(path="/docs/scan.pdf", title="scan.pdf", message="no text found", size_bytes=10)
    second = store.record_failure(path="/docs/scan.pdf", title="scan.pdf", message="still no text")
    (document,) = store.documents()
    assert document.id == second.id and document.status == FAILED and document.message == "still no text"
    indexed = add(store, "scan.pdf", ["Now with text."])
    assert [d.status for d in store.documents()] == [INDEXED], "indexing a path replaces its failure"
    store.record_failure(path="/docs/scan.pdf", title="scan.pdf", message="broke again")
    assert {d.status for d in store.documents()} == {INDEXED, FAILED}, "a failure keeps the indexed copy"
    assert store.document(indexed.id) is not None


def test_vector_index_follows_writes_from_another_connection(store):
    add(store, "one.txt", ["First."])
    assert store.vector_index("test-model", DIM)[0].size == 1
    with DocumentStore(store.path) as other:  # e.g. `michi docs add` while the app runs
        add(other, "two.txt", ["Second."], seed=3)
    assert store.vector_index("test-model", DIM)[0].size == 2
    with DocumentStore(store.path) as other:
        other.remove(other.documents()[0].id)
    assert store.vector_index("test-model", DIM)[0].size == 1


def test_a_reader_sees_only_whole_documents_while_a_writer_is_busy(store):
    add(store, "one.txt", ["First."])
    reader = sqlite3.connect(store.path)
    with store.db.atomic():
        store.db.execute("INSERT INTO documents (path, title, status, enabled, added_at, chunk_count) "
                         "VALUES ('/x', 'x', 'indexed', 1, 'now', 0)")
        assert reader.execute("SELECT COUNT(*) FROM documents").fetchone()[0] == 1, "WAL: readers not blocked"
    assert reader.execute("SELECT COUNT(*) FROM documents").fetchone()[0] == 2
    reader.close()
