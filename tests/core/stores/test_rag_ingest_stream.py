"""Ingestion of big and odd files: memory bounded by the batch, not the file; chunks that map back
to the text exactly across sections; a FIFO refused unread; a file changing while it is read;
progress on a pipe. A fast stand-in embedder: what is under test is the pipeline, not MiniLM."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest

from michi_core.stores.rag import ChunkingConfig, DocumentStore, Ingestor
from michi_core.stores.rag.extract import SECTION_CHARS
from michi_core.stores.rag.ingest import FAILED, INDEXED

REPO = Path(__file__).resolve().parents[3]


class FastEmbedder:
    name, dim, max_tokens = "fast-test-embedder", 16, 256

    def count_tokens(self, texts):
        return [len(text.split()) for text in texts]

    def embed(self, texts):
        seeds = [zlib.crc32(text.encode()) for text in texts]
        vectors = np.stack([np.random.default_rng(s).normal(size=self.dim) for s in seeds]).astype("f4")
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def store(tmp_path):
    with DocumentStore(tmp_path / "michi.sqlite3") as store:
        yield store


def big_text(path: Path, megabytes: float) -> Path:
    sentence = "Line {i}: the inventory lists {i} crates of pears in hall {h}.\n"
    with open(path, "w", encoding="utf-8") as file:
        i = 0
        while file.tell() < megabytes * 1e6:
            file.write(sentence.format(i=i, h=i % 7) + ("\n" if i % 5 == 4 else ""))
            i += 1
    return path


def test_chunks_of_a_file_longer_than_a_section_map_back_to_its_text_exactly(store, tmp_path):
    path = big_text(tmp_path / "inventory.txt", 2.5 * SECTION_CHARS / 1e6)
    (result,) = Ingestor(store, FastEmbedder(), ChunkingConfig(max_tokens=64, overlap_tokens=8)).ingest([path])
    assert result.status == INDEXED, result.message
    sections = path.read_text().strip().split("\n\n")  # the text is its paragraphs joined by blank lines
    text = "\n\n".join(section.strip() for section in sections)
    rows = store.db.execute("SELECT text, char_start, char_end, ordinal FROM chunks ORDER BY ordinal").fetchall()
    assert len(rows) == result.chunk_count > 100
    for chunk, start, end, _ in rows:
        assert text[start:end] == chunk
    assert [row[3] for row in rows] == list(range(len(rows)))
    assert rows[-1][0].endswith(text[-20:]), "the end of the file is indexed"
    assert store.keyword_search("Line 40000", 3), "a line from the third section is searchable"


MEASURE = textwrap.dedent("""
    import resource, sys, zlib
    from pathlib import Path
    import numpy as np
    from michi_core.stores.rag import DocumentStore, Ingestor

    class FastEmbedder:
        name, dim, max_tokens = "fast-test-embedder", 384, 256

        def count_tokens(self, texts):
            return [len(text.split()) for text in texts]

        def embed(self, texts):
            return np.ones((len(texts), self.dim), np.float32) / np.sqrt(self.dim)

    with DocumentStore(Path(sys.argv[2])) as store:
        (result,) = Ingestor(store, FastEmbedder()).ingest([Path(sys.argv[1])])
    assert result.status == "indexed", result.message
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
""")


def peak_rss_mb(path: Path, database: Path) -> int:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", MEASURE, str(path), str(database)], capture_output=True,
                            text=True, env=env, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return int(result.stdout.split()[-1])


def test_peak_memory_does_not_grow_with_the_file(tmp_path):
    small = peak_rss_mb(big_text(tmp_path / "small.txt", 2), tmp_path / "a.sqlite3")
    large = peak_rss_mb(big_text(tmp_path / "large.txt", 12), tmp_path / "b.sqlite3")
    # Before streaming, each MB of text cost ~80 MB at peak (2.35 GB for 30 MB): +800 MB here.
    assert large - small < 40, f"peak RSS {small} MB for 2 MB of text, {large} MB for 12 MB"


def test_a_fifo_is_refused_instead_of_blocking_forever(store, tmp_path):
    fifo = tmp_path / "p.txt"
    os.mkfifo(fifo)
    results = []
    worker = threading.Thread(target=lambda: results.extend(Ingestor(store, FastEmbedder()).ingest([fifo])),
                              daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "reading a FIFO blocked"
    (result,) = results
    assert result.status == FAILED and "not a regular file" in result.message


def test_a_file_changed_between_the_two_reads_is_refused(store, tmp_path):
    path = tmp_path / "draft.txt"
    path.write_text("The meeting is on Monday at ten. " * 200)

    def edit_while_reading(progress):
        if progress.stage == "chunking":  # the first pass (hash) is done, the second has begun
            with open(path, "r+b") as file:
                file.write(b"Tuesday")

    (result,) = Ingestor(store, FastEmbedder()).ingest([path], on_progress=edit_while_reading)
    assert result.status == FAILED and "changed while it was being read" in result.message
    assert store.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0] == 0, "nothing of it is kept"


PIPED_ADD = textwrap.dedent("""
    import sys
    import numpy as np
    import michi_core.stores.rag.embedder as embedder
    import michi_core.stores.rag.cli as cli

    class FastEmbedder:
        name, dim, max_tokens = "fast-test-embedder", 8, 256

        def count_tokens(self, texts):
            return [len(text.split()) for text in texts]

        def embed(self, texts):
            return np.ones((len(texts), self.dim), np.float32) / np.sqrt(self.dim)

    embedder.default_embedder = FastEmbedder
    cli.PROGRESS_LOG_S = 0.0  # every progress event becomes a line
    sys.exit(cli.main(["docs", "add", sys.argv[1]]))
""")


def test_progress_is_logged_without_a_terminal(tmp_path):
    """`michi docs add` in a pipe or under a service manager: plain progress lines, never a silent hour."""
    path = big_text(tmp_path / "notes.txt", 0.3)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    err = subprocess.run([sys.executable, "-c", PIPED_ADD, str(path)], capture_output=True, text=True,
                         timeout=300, check=True, env=env).stderr
    lines = [line for line in err.splitlines() if "notes.txt" in line]
    assert any("embedding" in line and "%" in line for line in lines), err[-2000:]
    assert "\r" not in err and "\x1b" not in err, "no terminal control sequences in a log"
