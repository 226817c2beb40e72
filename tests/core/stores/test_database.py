"""The shared SQLite database under stress: concurrent writers from several processes, a damaged
file, a read-only one, file modes, and documents half-written by a process that died."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from michi_core.paths import data_dir, database_path
from michi_core.stores import database
from michi_core.stores.conversations import ConversationStore
from michi_core.stores.database import StoreDamaged, StoreReadOnly, describe
from michi_core.stores.rag.chunking import ChunkSpan
from michi_core.stores.rag.store import DocumentStore
from michi_core.stores.voices import VoiceError, VoiceStore

REPO = Path(__file__).resolve().parents[3]
FILES_PER_WRITER = 60

# One writer process: documents through the real Ingestor (a fast stand-in embedder: what is under
# test is the store), plus a voice and a conversation per file so that all three stores' writers
# interleave with the other process's.
WRITER = textwrap.dedent("""
    import sys, zlib
    from pathlib import Path
    import numpy as np
    from michi_core.stores.conversations import ConversationStore, Turn
    from michi_core.stores.rag import ChunkingConfig, DocumentStore, Ingestor
    from michi_core.stores.voices import VoiceError, VoiceStore

    class FastEmbedder:
        name, dim, max_tokens = "fast-test-embedder", 16, 256

        def count_tokens(self, texts):
            return [len(text.split()) for text in texts]

        def embed(self, texts):
            seeds = [zlib.crc32(text.encode()) for text in texts]
            vectors = np.stack([np.random.default_rng(s).normal(size=self.dim) for s in seeds]).astype("f4")
            return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    folder, database, tag = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    paths = []
    for i in range(int(sys.argv[4])):
        path = folder / f"{tag}-{i}.txt"
        path.write_text(f"Writer {tag} note {i}: the locker code is {tag}{i}. " * 20)
        paths.append(path)
    print("ready", flush=True)
    sys.stdin.readline()  # both writers start together
    with DocumentStore(database) as docs, VoiceStore(database) as voices, ConversationStore(database) as calls:
        ingestor = Ingestor(docs, FastEmbedder(), ChunkingConfig(max_tokens=24, overlap_tokens=0))
        for i, path in enumerate(paths):
            (result,) = ingestor.ingest([path])
            print(result.status, result.message, flush=True)
            voices.add(f"{tag} voice {i}", np.full(2400, 0.1, np.float32), 24_000)
            calls.save(started_at="2026-01-01T00:00:00", ended_at="2026-01-01T00:01:00", model="test",
                       sample_rate=24_000, user_audio=np.zeros(1920, np.float32),
                       assistant_audio=np.zeros(1920, np.float32),
                       turns=[Turn("user", f"{tag} {i}", 0.0, 0.1)])
""")


def python_env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


@pytest.mark.parametrize("run", range(3))
def test_two_processes_writing_at_once_lose_nothing(tmp_path, run):
    db = tmp_path / "michi.sqlite3"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(db), tag, str(FILES_PER_WRITER)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=python_env()) for tag in ("a", "b")]
    for writer in writers:
        assert writer.stdout.readline().strip() == "ready", writer.stderr.read()
    for writer in writers:  # go
        writer.stdin.write("\n")
        writer.stdin.flush()
    outputs = [writer.communicate(timeout=600) for writer in writers]
    for writer, (out, err) in zip(writers, outputs):
        assert writer.returncode == 0, err[-3000:]
        lines = out.splitlines()
        assert lines == ["indexed None"] * FILES_PER_WRITER, [line for line in lines if line != "indexed None"]
    with DocumentStore(db) as docs, VoiceStore(db) as voices, ConversationStore(db) as calls:
        assert len(docs.documents()) == 2 * FILES_PER_WRITER
        assert all(d.status == "indexed" and d.chunk_count > 0 for d in docs.documents())
        assert len(voices.voices()) == 2 * FILES_PER_WRITER
        assert len(calls.list()) == 2 * FILES_PER_WRITER
        assert docs.keyword_search("b59", 5), "the last file of a writer is searchable"


def test_every_write_takes_the_lock_first(tmp_path):
    """BEGIN IMMEDIATE, not a deferred BEGIN that reads and then fails to upgrade."""
    with DocumentStore(tmp_path / "michi.sqlite3") as store:
        statements = []
        store.db.conn.set_trace_callback(statements.append)
        store.record_failure(path="/x.txt", title="x.txt", message="probe")
        store.set_enabled(1, False)
        begins = [s.strip().upper() for s in statements if s.strip().upper().startswith("BEGIN")]
        assert begins == ["BEGIN IMMEDIATE"] * 2, statements


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _damage(path: Path) -> None:
    """Overwrite some pages in the middle of the file with random bytes, as a bad disk would."""
    data = bytearray(path.read_bytes())
    page = 4096
    rng = np.random.default_rng(0)
    for number in range(2, len(data) // page, 3):
        data[number * page : number * page + page] = rng.bytes(page)
    path.write_bytes(bytes(data))


def _filled_database(path: Path) -> None:
    with DocumentStore(path) as store:
        for i in range(40):
            text = f"Paragraph {i} about the garden. " * 50
            store.add_document(path=f"/d/{i}.txt", title=f"{i}", content_hash=f"h{i}", size_bytes=len(text),
                               page_count=None, message=None, chunks=[ChunkSpan(0, len(text), 100, None)],
                               texts=[text], vectors=np.ones((1, 8), np.float32), embedding_model="m")
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


@pytest.mark.parametrize("damage", ["pages", "random bytes"])
def test_a_damaged_database_is_detected_and_left_untouched(tmp_path, damage, monkeypatch):
    db = tmp_path / "michi.sqlite3"
    if damage == "pages":
        _filled_database(db)
        _damage(db)
    else:
        db.write_bytes(os.urandom(64 * 1024))
    monkeypatch.setattr(database, "_checked", {})  # a fresh process's view
    before = _sha(db)

    with DocumentStore(db) as store:
        assert isinstance(store.problem, StoreDamaged)
        message = str(store.problem)
        assert "damaged" in message and ".recover" in message and "did not change" in message
        assert store.documents() == [], "reads find nothing rather than crash"
        with pytest.raises(StoreDamaged):
            store.record_failure(path="/y.txt", title="y", message="must not be written")
    with VoiceStore(db) as voices, pytest.raises(VoiceError, match="damaged"):  # shown by the Voices panel
        voices.add("Ann", np.full(2400, 0.1, np.float32), 24_000)
    with ConversationStore(db) as calls, pytest.raises(StoreDamaged):
        calls.save(started_at="a", ended_at="b", model="m", sample_rate=24_000,
                   user_audio=np.zeros(10, np.float32), assistant_audio=np.zeros(10, np.float32), turns=[])
    assert "damaged" in describe(db)
    assert _sha(db) == before, "the damaged file is never written"
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0


def _no_write_access(monkeypatch) -> None:
    """Root writes through any mode bits; make the permission check see what a user would."""
    real_access = os.access
    monkeypatch.setattr(database.os, "access",
                        lambda path, mode, **kw: False if mode & os.W_OK else real_access(path, mode, **kw))


def test_a_read_only_database_reads_and_refuses_writes_clearly(tmp_path, monkeypatch):
    db = tmp_path / "data" / "michi.sqlite3"
    with DocumentStore(db) as store:
        store.record_failure(path="/kept.txt", title="kept.txt", message="listed")
    folder = db.parent
    folder.chmod(0o500)
    db.chmod(0o400)
    if os.access(db, os.W_OK):  # root
        _no_write_access(monkeypatch)
    before = _sha(db)
    try:
        with DocumentStore(db) as store:
            assert isinstance(store.problem, StoreReadOnly) and "read-only" in str(store.problem)
            assert [d.title for d in store.documents()] == ["kept.txt"]
            with pytest.raises(StoreReadOnly):
                store.record_failure(path="/new.txt", title="new.txt", message="refused")
        with VoiceStore(db) as voices, pytest.raises(VoiceError, match="read-only"):
            voices.add("Ann", np.full(2400, 0.1, np.float32), 24_000)  # what the Voices panel shows
        assert "read-only" in describe(db)
        assert _sha(db) == before
    finally:
        folder.chmod(0o700)
        db.chmod(0o600)


def test_a_data_folder_that_cannot_be_created_gives_a_clear_problem(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder's parent should be")
    with VoiceStore(blocker / "data" / "michi.sqlite3") as store:
        assert isinstance(store.problem, StoreReadOnly) and "cannot create" in str(store.problem)
        assert store.voices() == []


def test_user_data_is_private(michi_home):
    (michi_home / "data").mkdir(parents=True)
    (michi_home / "data").chmod(0o755)  # as older versions left it
    with ConversationStore() as store:
        store.save(started_at="a", ended_at="b", model="m", sample_rate=24_000,
                   user_audio=np.zeros(10, np.float32), assistant_audio=np.zeros(10, np.float32), turns=[])
        files = [database_path(), Path(f"{database_path()}-wal"), Path(f"{database_path()}-shm")]
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, f"{path.name} is {oct(path.stat().st_mode)}"
    assert stat.S_IMODE(data_dir().stat().st_mode) == 0o700


def test_an_old_world_readable_database_is_made_private(tmp_path):
    db = tmp_path / "michi.sqlite3"
    sqlite3.connect(db).close()
    db.chmod(0o644)
    VoiceStore(db).close()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_documents_half_written_by_a_dead_process_are_dropped(tmp_path):
    db = tmp_path / "michi.sqlite3"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    with DocumentStore(db) as store:
        document_id = store.begin_document(path="/big.txt", title="big", content_hash="h", size_bytes=1,
                                           embedding_model="m")
        store.add_chunks(document_id, 0, [ChunkSpan(0, 4, 1, None)], ["text"], np.ones((1, 8), np.float32))
        assert store.documents() == [], "a document being written is not listed"
        assert store.keyword_search("text", 5) == [], "nor searched"
        store.db.execute("UPDATE documents SET indexing_pid = ?", [int(dead.stdout)])
        store.db.conn.commit()
    with DocumentStore(db) as store:
        assert store.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0] == 0
        assert store.db.execute("SELECT COUNT(*) FROM documents").fetchone()[0] == 0
