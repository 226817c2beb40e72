"""Crash safety: SIGKILL a process in the middle of committing a document, then reopen.

The child uses a fast stand-in embedder (what is under test is the store's transaction, not the
vectors). To make the kill land inside the transaction every time, the child's connection plays
a slow disk: when the third document's vectors start being written (its document and chunk rows
already are, uncommitted) it announces it and stalls there until killed.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from michi_core.stores.rag.store import DocumentStore

REPO = Path(__file__).resolve().parents[3]

CHILD = textwrap.dedent("""
    import sys, time, zlib
    from pathlib import Path
    import numpy as np
    from michi_core.stores.rag import ChunkingConfig, DocumentStore, Ingestor

    class FastEmbedder:
        name, dim, max_tokens = "fast-test-embedder", 16, 256

        def count_tokens(self, texts):
            return [len(text.split()) for text in texts]

        def embed(self, texts):
            seeds = [zlib.crc32(text.encode()) for text in texts]
            vectors = np.stack([np.random.default_rng(s).normal(size=self.dim) for s in seeds]).astype("f4")
            return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    folder, database = Path(sys.argv[1]), Path(sys.argv[2])
    store = DocumentStore(database)
    ingestor = Ingestor(store, FastEmbedder(), ChunkingConfig(max_tokens=24, overlap_tokens=0),
                        embed_batch=100_000)
    index = 0

    def slow_disk(statement):
        if index == 2 and statement.lstrip().upper().startswith("INSERT") and "chunk_embeddings" in statement:
            print("writing", index, flush=True)
            time.sleep(60)

    store.db.conn.set_trace_callback(slow_disk)
    for index in range(3):
        path = folder / f"doc{index}.txt"
        sentences = (f"Document {index} sentence {j} says token{index}x{j}." for j in range(20_000))
        path.write_text(" ".join(sentences))
        (result,) = ingestor.ingest([path])
        print(result.status, index, result.chunk_count, flush=True)
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_sigkill_mid_ingest_leaves_a_valid_database_and_earlier_documents_intact(tmp_path):
    database = tmp_path / "michi.sqlite3"
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": python_path}  # the checkout's michi_core, installed or not
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), str(database)],
                             stdout=subprocess.PIPE, text=True, env=env)
    committed: dict[int, int] = {}
    try:
        for line in child.stdout:
            word, index, *rest = line.split()
            if word == "indexed":
                committed[int(index)] = int(rest[0])
            elif word == "writing":
                break  # document 2 is half written, in an open transaction
        assert sorted(committed) == [0, 1], f"child ended early: {committed}"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert (tmp_path / "michi.sqlite3-wal").exists(), "the kill left a write-ahead log to recover from"

    connection = sqlite3.connect(database)
    assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    connection.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')")  # raises if corrupt
    connection.close()

    with DocumentStore(database) as store:
        documents = {Path(d.path).name: d for d in store.documents()}
        for index, chunk_count in committed.items():
            document = documents[f"doc{index}.txt"]
            assert document.chunk_count == chunk_count > 1000, "earlier documents are whole"
        for document in documents.values():
            chunks, vectors = store.db.execute(
                "SELECT COUNT(*), COUNT(e.chunk_id) FROM chunks c "
                "LEFT JOIN chunk_embeddings e ON e.chunk_id = c.id WHERE c.document_id = ?", [document.id]
            ).fetchone()
            assert chunks == vectors == document.chunk_count, f"{document.path} is partly written"
        assert "doc2.txt" not in documents, "the document being written must vanish as a whole"
        assert store.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0] == sum(committed.values())
        assert store.keyword_search("token1x19999", 5), "earlier documents are still searchable"
        # The database stays writable after recovery.
        assert store.record_failure(path="/after/crash.txt", title="crash.txt", message="probe").id > 0
