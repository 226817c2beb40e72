"""The Documents panel with real Qt widgets, a real database and the real embedder, offscreen."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from app.threads import running_threads
from app.widgets.documents_panel import CHUNKS, DOCUMENT_ID, PAGES, STATUS, TITLE, DocumentsPanel
from michi_core.stores.rag import DocumentStore, default_embedder

CORPUS = Path(__file__).resolve().parents[1] / "data" / "rag" / "corpus"


@pytest.fixture
def panel(qtbot, tmp_path):
    panel = DocumentsPanel(tmp_path / "michi.sqlite3", default_embedder())
    qtbot.addWidget(panel)
    panel.show()
    yield panel
    panel.shutdown()
    qtbot.wait_until(lambda: not running_threads(), timeout=20_000)


def rows(panel) -> dict[str, tuple[str, str, str]]:
    tree = panel.documents
    items = (tree.topLevelItem(i) for i in range(tree.topLevelItemCount()))
    return {item.text(TITLE): (item.text(STATUS), item.text(CHUNKS), item.text(PAGES)) for item in items}


def item_for(panel, title: str):
    tree = panel.documents
    return next(tree.topLevelItem(i) for i in range(tree.topLevelItemCount())
                if tree.topLevelItem(i).text(TITLE) == title)


def test_add_shows_progress_then_indexed_rows_and_failures(panel, qtbot, tmp_path):
    broken = tmp_path / "broken.docx"
    broken.write_bytes(b"not a zip at all")
    missing = tmp_path / "gone.txt"
    statuses_seen = set()
    panel._ingest_worker.progress.connect(lambda p: statuses_seen.add(p.stage))

    panel.add_files([CORPUS / "travel_policy.pdf", broken, missing, CORPUS / "sourdough.txt"])
    assert set(rows(panel)) == {"travel_policy.pdf", "broken.docx", "gone.txt", "sourdough.txt"}
    assert all(status == "queued" for status, _, _ in rows(panel).values()), "rows appear at once"
    assert panel.progress.isVisible()

    qtbot.wait_until(lambda: "sourdough.txt" in rows(panel) and rows(panel)["sourdough.txt"][0] == "indexed",
                     timeout=60_000)
    table = rows(panel)
    assert table["Company Travel Policy"] == ("indexed", "6", "3")
    assert table["broken.docx"][0].startswith("failed: not a valid .docx")
    assert table["gone.txt"][0] == "failed: file not found: check the path"
    assert {"reading", "chunking", "embedding", "saving"} <= statuses_seen
    qtbot.wait_until(lambda: not panel.progress.isVisible())


def test_enable_disable_and_remove_reach_the_store(panel, qtbot, tmp_path):
    panel.add_files([CORPUS / "bike_share.md"])
    qtbot.wait_until(lambda: rows(panel).get("Lindenport Bike Share: Rider Rules", ("",))[0] == "indexed",
                     timeout=60_000)
    item = item_for(panel, "Lindenport Bike Share: Rider Rules")
    document_id = item.data(TITLE, DOCUMENT_ID)

    item.setCheckState(TITLE, Qt.CheckState.Unchecked)
    with DocumentStore(tmp_path / "michi.sqlite3") as store:
        assert store.document(document_id).enabled is False

    item_for(panel, "Lindenport Bike Share: Rider Rules").setSelected(True)
    qtbot.mouseClick(panel.remove_button, Qt.MouseButton.LeftButton)
    assert rows(panel) == {}
    with DocumentStore(tmp_path / "michi.sqlite3") as store:
        assert store.documents() == []


def test_search_box_previews_retrieval(panel, qtbot):
    panel.add_files([CORPUS / "lighthouse.html", CORPUS / "espresso_manual.pdf"])
    qtbot.wait_until(lambda: len([r for r in rows(panel).values() if r[0] == "indexed"]) == 2, timeout=60_000)

    qtbot.keyClicks(panel.search_box, "what fuel did the old lamp burn")
    qtbot.wait_until(lambda: panel.results.count() > 0, timeout=20_000)
    first = panel.results.item(0).text()
    assert first.startswith("The Skerryvane Lighthouse") and "colza oil" in panel.results.item(0).toolTip()

    panel.search_box.clear()
    qtbot.wait_until(lambda: panel.results.count() == 0, timeout=5_000)


def test_dropping_files_adds_them(panel, qtbot):
    def drag_and_drop(mime: QMimeData) -> bool:
        buttons, modifiers = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
        enter = QDragEnterEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, buttons, modifiers)
        QApplication.sendEvent(panel, enter)
        if not enter.isAccepted():
            return False
        drop = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, buttons, modifiers)
        QApplication.sendEvent(panel, drop)
        return drop.isAccepted()

    text = QMimeData()
    text.setText("just some text")
    assert not drag_and_drop(text), "only files can be dropped"
    files = QMimeData()
    files.setUrls([QUrl.fromLocalFile(str(CORPUS / "houseplants.docx"))])
    assert drag_and_drop(files)
    qtbot.wait_until(lambda: rows(panel).get("Caring For Common Houseplants", ("",))[0] == "indexed",
                     timeout=60_000)


def test_closing_mid_ingest_returns_at_once_and_the_worker_stops(qtbot, tmp_path):
    long_note = tmp_path / "long.txt"
    long_note.write_text(" ".join(f"Line {i} of a long note about the garden and its {i} tulips."
                                  for i in range(3000)))
    panel = DocumentsPanel(tmp_path / "michi.sqlite3", default_embedder())
    qtbot.addWidget(panel)
    panel.add_files([long_note, CORPUS / "sourdough.txt"])
    qtbot.wait_until(lambda: rows(panel)["long.txt"][0].startswith("embedding"), timeout=30_000)

    started = time.monotonic()
    panel.close()
    assert time.monotonic() - started < 0.5, "closing must not wait for the worker"
    qtbot.wait_until(lambda: not running_threads(), timeout=20_000)  # the threads end by themselves, quickly
    with DocumentStore(tmp_path / "michi.sqlite3") as store:
        assert store.documents() == [], "the abandoned file left nothing half-written"


def test_a_read_only_database_keeps_its_documents_and_the_panel_says_why(qtbot, tmp_path, monkeypatch):
    """Remove and disable on a store that cannot be written: a message, the rows as they were, no
    exception escaping a Qt slot."""
    import os

    from michi_core.stores import database

    folder = tmp_path / "data"
    folder.mkdir()
    with DocumentStore(folder / "michi.sqlite3") as store:
        from michi_core.stores.rag import Ingestor

        Ingestor(store, default_embedder()).ingest([CORPUS / "sourdough.txt"])
    monkeypatch.setattr(database, "_checked", {})
    real_access = os.access
    monkeypatch.setattr(database.os, "access",  # root ignores mode bits: what a user's check would see
                        lambda path, mode, **kw: False if mode & os.W_OK else real_access(path, mode, **kw))
    folder.chmod(0o500)
    try:
        panel = DocumentsPanel(folder / "michi.sqlite3", default_embedder())
        qtbot.addWidget(panel)
        panel.show()
        item = item_for(panel, "sourdough.txt")
        item.setSelected(True)
        panel.remove_selected()
        assert "Could not remove sourdough.txt" in panel.status.text()
        assert "sourdough.txt" in rows(panel), "the document is still there"
        item_for(panel, "sourdough.txt").setCheckState(TITLE, Qt.CheckState.Unchecked)
        assert "Could not change sourdough.txt" in panel.status.text()
        qtbot.wait_until(lambda: item_for(panel, "sourdough.txt").checkState(TITLE) == Qt.CheckState.Checked)
        panel.shutdown()
        qtbot.wait_until(lambda: not running_threads(), timeout=20_000)
    finally:
        folder.chmod(0o700)
