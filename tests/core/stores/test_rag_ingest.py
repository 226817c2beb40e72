"""Ingestion end to end with the real embedder: every format, every kind of bad file in one batch
(each with its own clear status, the rest of the batch going on), duplicates, progress, stopping."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject, NumberObject

from michi_core.stores.rag import DocumentStore, Ingestor, default_embedder
from michi_core.stores.rag.ingest import CANCELLED, DUPLICATE, FAILED, INDEXED

CORPUS = Path(__file__).resolve().parents[2] / "data" / "rag" / "corpus"


@pytest.fixture
def store(tmp_path):
    with DocumentStore(tmp_path / "michi.sqlite3") as store:
        yield store


@pytest.fixture
def ingestor(store):
    return Ingestor(store, default_embedder())


def encrypted_pdf(path: Path, user_password: str) -> Path:
    writer = PdfWriter(clone_from=CORPUS / "travel_policy.pdf")
    writer.encrypt(user_password, owner_password="owner", algorithm="RC4-128")
    writer.write(path)
    return path


def image_only_pdf(path: Path) -> Path:
    """A one-page 'scan': an 8x8 grey image drawn over the page, no text operators at all."""
    writer = PdfWriter()
    page = writer.add_blank_page(595, 842)
    image = DecodedStreamObject()
    image.set_data(bytes(range(0, 256, 4)))
    image.update({
        NameObject("/Type"): NameObject("/XObject"), NameObject("/Subtype"): NameObject("/Image"),
        NameObject("/Width"): NumberObject(8), NameObject("/Height"): NumberObject(8),
        NameObject("/ColorSpace"): NameObject("/DeviceGray"),
        NameObject("/BitsPerComponent"): NumberObject(8),
    })
    page[NameObject("/Resources")] = DictionaryObject({
        NameObject("/XObject"): DictionaryObject({NameObject("/Im1"): writer._add_object(image)}),
    })
    content = DecodedStreamObject()
    content.set_data(b"q 500 0 0 700 40 70 cm /Im1 Do Q")
    page[NameObject("/Contents")] = writer._add_object(content)
    buffer = io.BytesIO()
    writer.write(buffer)
    path.write_bytes(buffer.getvalue())
    return path


def bytes_read_by_this_process() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_every_format_is_indexed_with_its_chunks_and_vectors(ingestor, store):
    paths = sorted(CORPUS.iterdir())
    assert {p.suffix for p in paths} == {".md", ".txt", ".html", ".docx", ".pdf"}
    results = ingestor.ingest(paths)

    assert [r.status for r in results] == [INDEXED] * len(paths), [(r.path.name, r.message) for r in results]
    documents = {Path(d.path).name: d for d in store.documents()}
    assert documents["travel_policy.pdf"].page_count == 3
    assert documents["travel_policy.pdf"].title == "Company Travel Policy"
    assert documents["sourdough.txt"].title == "sourdough.txt", "no metadata title: the file name"
    for document in documents.values():
        (chunks,) = store.db.execute(
            "SELECT COUNT(*) FROM chunks WHERE document_id = ?", [document.id]).fetchone()
        assert chunks == document.chunk_count > 0
        assert document.embedding_model == "all-MiniLM-L6-v2" and len(document.content_hash) == 64
    blobs = [blob for (blob,) in store.db.execute("SELECT vector FROM chunk_embeddings")]
    assert len(blobs) == sum(d.chunk_count for d in documents.values())
    vectors = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    pages = {page for (page,) in store.db.execute(
        "SELECT page FROM chunks WHERE document_id = ?", [documents["espresso_manual.pdf"].id])}
    assert pages == {1, 2, 3}


def test_bad_files_each_get_a_clear_status_and_the_batch_goes_on(ingestor, store, tmp_path):
    files = tmp_path / "in"
    files.mkdir()
    good = files / "good.txt"
    good.write_text("The spare key is hidden under the blue flower pot by the back door.")
    valid_pdf = (CORPUS / "travel_policy.pdf").read_bytes()
    truncated = files / "truncated.pdf"
    truncated.write_bytes(valid_pdf[: len(valid_pdf) // 3])
    garbage = files / "garbage.pdf"
    garbage.write_bytes(os.urandom(5000))
    locked = encrypted_pdf(files / "locked.pdf", user_password="secret")
    scan = image_only_pdf(files / "scan.pdf")
    binary = files / "photo.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(4000))
    latin1 = files / "latin1.txt"
    latin1.write_bytes("Le gâteau de ma grand-mère était délicieux.".encode("latin-1"))
    empty = files / "empty.md"
    empty.touch()
    huge = files / "huge.txt"
    with open(huge, "wb") as file:
        file.truncate(500 * 1024 * 1024)  # sparse: 500 MB on paper, nothing on disk
    vanishing = files / "vanishing.md"
    vanishing.write_text("# Gone\nThis file is deleted just as Michi starts reading it.")
    missing = files / "never-existed.txt"
    unsupported = files / "budget.xlsx"
    unsupported.write_bytes(b"PK\x03\x04")
    last = files / "last.md"
    last.write_text("# Wifi\nThe guest wifi password is written on the fridge.")

    def on_progress(progress):
        if progress.path == vanishing and progress.stage == "reading":
            vanishing.unlink()

    batch = [good, truncated, garbage, locked, scan, binary, latin1, empty, huge, vanishing, missing,
             unsupported, last]
    read_before = bytes_read_by_this_process()
    results = {r.path.name: r for r in ingestor.ingest(batch, on_progress=on_progress)}
    assert len(results) == len(batch), "every file gets a result"

    def failed(name: str, *words: str) -> None:
        result = results[name]
        assert result.status == FAILED, (name, result)
        for word in words:
            assert word in result.message, (name, result.message)

    failed("truncated.pdf", "damaged")
    failed("garbage.pdf", "PDF")
    failed("locked.pdf", "password-protected")
    failed("scan.pdf", "scanned images", "OCR")
    failed("photo.txt", "binary")
    failed("empty.md", "empty")
    failed("huge.txt", "524.3 MB", "up to 104.9 MB")
    failed("vanishing.md", "disappeared")
    failed("never-existed.txt", "not found")
    failed("budget.xlsx", "unsupported file type")
    assert results["latin1.txt"].status == INDEXED and "Windows-1252" in results["latin1.txt"].message
    assert results["good.txt"].status == INDEXED and results["last.md"].status == INDEXED

    assert results["huge.txt"].seconds < 1.0
    read = bytes_read_by_this_process() - read_before
    assert read < 50 * 1024 * 1024, f"{read} bytes read: the 500 MB file must be refused before reading"

    stored = {Path(d.path).name: d for d in store.documents()}
    assert stored["scan.pdf"].status == FAILED and "OCR" in stored["scan.pdf"].message, \
        "failures are remembered so the panel and `docs list` can show why"
    assert "never-existed.txt" not in stored, "a path that never existed leaves nothing behind"
    assert stored["latin1.txt"].message.startswith("not UTF-8")
    text = store.db.execute(
        "SELECT text FROM chunks WHERE document_id = ?", [stored["latin1.txt"].id]).fetchone()[0]
    assert "gâteau" in text and "mère" in text


def test_owner_password_only_pdf_is_read(ingestor):
    (result,) = ingestor.ingest([encrypted_pdf(Path(ingestor.store.path).parent / "owner.pdf", "")])
    assert result.status == INDEXED and result.page_count == 3


def test_file_deleted_after_it_was_read_is_still_indexed(ingestor, tmp_path):
    path = tmp_path / "note.txt"
    path.write_text("The boiler service is due every October. " * 30)

    def on_progress(progress):
        if progress.stage == "embedding" and path.exists():
            path.unlink()

    (result,) = ingestor.ingest([path], on_progress=on_progress)
    assert result.status == INDEXED, "what was read is kept: the file's content is already in hand"


def test_same_content_is_detected_by_hash_and_edits_replace(ingestor, store, tmp_path):
    original = tmp_path / "recipe.txt"
    original.write_text("Pancakes need two eggs, 250 ml of milk and 125 g of flour.")
    copy = tmp_path / "copy of recipe.txt"
    copy.write_bytes(original.read_bytes())

    first, duplicate = ingestor.ingest([original, copy])
    assert first.status == INDEXED
    assert duplicate.status == DUPLICATE and duplicate.document_id == first.document_id
    assert f"#{first.document_id}" in duplicate.message
    assert len(store.documents()) == 1

    original.write_text("Pancakes need three eggs, 300 ml of milk and 150 g of flour.")
    (edited,) = ingestor.ingest([original])
    assert edited.status == INDEXED and edited.document_id != first.document_id
    (document,) = store.documents()
    assert document.id == edited.document_id, "re-adding an edited file replaces the old version"
    assert store.keyword_search("three eggs", 5) and not store.keyword_search("two", 5)


def test_progress_runs_through_the_stages_in_order(ingestor):
    events = []
    ingestor.ingest([CORPUS / "espresso_manual.pdf", CORPUS / "sourdough.txt"], on_progress=events.append)
    for index in (0, 1):
        stages = [e.stage for e in events if e.file_index == index]
        assert stages[0] == "reading" and stages[1] == "chunking" and stages[-1] == "saving"
        assert set(stages[2:-1]) == {"embedding"}
        fractions = [e.fraction for e in events if e.file_index == index and e.stage == "embedding"]
        assert fractions == sorted(fractions) and fractions[0] == 0.0
    assert all(e.file_count == 2 for e in events)


def test_stopping_abandons_the_current_file_and_writes_nothing(ingestor, store, tmp_path):
    long_text = tmp_path / "long.txt"
    long_text.write_text(" ".join(f"Fact number {i} is that the sky had {i} clouds." for i in range(400)))
    embedding_calls = []

    def on_progress(progress):
        if progress.stage == "embedding":
            embedding_calls.append(progress)

    started = time.monotonic()
    results = ingestor.ingest([long_text, CORPUS / "sourdough.txt"], on_progress=on_progress,
                              should_stop=lambda: len(embedding_calls) >= 2)
    assert [r.status for r in results] == [CANCELLED], "the batch ends at the stopped file"
    assert time.monotonic() - started < 10
    assert store.documents() == []
    assert store.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0] == 0
