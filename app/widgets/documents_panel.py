"""The Documents panel: add files (button or drag and drop), watch them being indexed, turn
them on or off for retrieval, remove them, and preview what a question would retrieve.

Indexing and searching run in two workers, each a QObject moved to its own QThread, so the GUI
thread only reads the store (quick, WAL mode) and never waits on the embedding model: the
search stays responsive while a long PDF is embedded. Closing never waits on a worker: the
workers are asked to stop, and `app.threads` keeps their threads referenced until they finish
(and waits on them, for a bounded time, at application exit).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QObject, Qt, QThread, QTimer, Signal, Slot
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.threads import start_in_thread
from michi_core.stores.database import StoreError
from michi_core.stores.rag import (
    SUPPORTED_SUFFIXES,
    DocumentStore,
    Embedder,
    Ingestor,
    IngestProgress,
    IngestResult,
    Retriever,
    default_embedder,
    expand_paths,
)
from michi_core.stores.rag.ingest import CANCELLED, DUPLICATE

log = logging.getLogger(__name__)

TITLE, STATUS, CHUNKS, PAGES = range(4)
DOCUMENT_ID = Qt.ItemDataRole.UserRole  # on store rows: the document id
PENDING_PATH = Qt.ItemDataRole.UserRole + 1  # on rows of files still in a batch: their path


class IngestWorker(QObject):
    """Indexes batches of files with its own store connection (SQLite objects are per thread)."""

    progress = Signal(object)  # IngestProgress
    file_finished = Signal(object)  # IngestResult
    batch_finished = Signal(list)  # paths of the batch that were never reached (stopped)

    def __init__(self, store_path: Path | None, embedder: Embedder):
        super().__init__()
        self._store_path = store_path
        self._embedder = embedder
        self._ingestor: Ingestor | None = None
        self._stop = threading.Event()  # set from the GUI thread while this one is busy

    @Slot()
    def start(self) -> None:
        self._ingestor = Ingestor(DocumentStore(self._store_path), self._embedder)

    def stop(self) -> None:
        self._stop.set()

    @Slot(list)
    def ingest(self, paths: list[str]) -> None:
        if self._stop.is_set():
            return
        results = self._ingestor.ingest(
            paths, on_progress=self.progress.emit, should_stop=self._stop.is_set,
            on_result=self.file_finished.emit,
        )
        self.batch_finished.emit(paths[len(results):])

    @Slot()
    def close(self) -> None:
        """The worker's last act, in its own thread (where its connection was opened); queued
        after any pending request, which the stop flag turns into a no-op."""
        if self._ingestor is not None:
            self._ingestor.store.close()
        QThread.currentThread().quit()


class SearchWorker(QObject):
    """Runs retrieval previews; stale queries (the user kept typing) are skipped."""

    results = Signal(str, list)  # query, [Passage]
    failed = Signal(str, str)  # query, message

    def __init__(self, store_path: Path | None, embedder: Embedder):
        super().__init__()
        self._store_path = store_path
        self._embedder = embedder
        self._retriever: Retriever | None = None
        self.latest_query: str | None = ""  # set by the GUI thread; None once the panel closes

    @Slot()
    def start(self) -> None:
        self._retriever = Retriever(DocumentStore(self._store_path), self._embedder)

    @Slot(str)
    def search(self, query: str) -> None:
        if query != self.latest_query:
            return
        try:
            self.results.emit(query, self._retriever.search(query, limit=5))
        except Exception as error:  # the preview must never take the panel down
            log.exception("search preview failed")
            self.failed.emit(query, str(error))

    @Slot()
    def close(self) -> None:
        if self._retriever is not None:
            self._retriever.store.close()
        QThread.currentThread().quit()


class DocumentsPanel(QWidget):
    _ingest_requested = Signal(list)
    _search_requested = Signal(str)
    _close_requested = Signal()

    def __init__(self, store_path: Path | None = None, embedder: Embedder | None = None, parent=None):
        super().__init__(parent)
        self.store = DocumentStore(store_path)
        embedder = embedder or default_embedder()
        self.setAcceptDrops(True)

        self.add_button = QPushButton("Add…")
        self.remove_button = QPushButton("Remove")
        self.add_button.clicked.connect(self._choose_files)
        self.remove_button.clicked.connect(self.remove_selected)
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)

        self.documents = QTreeWidget()
        self.documents.setHeaderLabels(["Document", "Status", "Chunks", "Pages"])
        self.documents.setRootIsDecorated(False)
        self.documents.setSelectionMode(QTreeWidget.SelectionMode.ExtendedSelection)
        self.documents.itemChanged.connect(self._on_item_changed)
        self.documents.setToolTip("Drop files here. Unchecked documents are kept but not consulted.")

        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.hide()
        self.status = QLabel("Drop .txt, .md, .pdf, .html or .docx files here, or use Add…")
        self.status.setWordWrap(True)

        self.search_box = QLineEdit()
        self.search_box.setPlaceholderText("Preview what Michi would find for a question…")
        self.search_box.setClearButtonEnabled(True)
        self.results = QListWidget()
        self.results.setWordWrap(True)
        self._search_timer = QTimer(self, singleShot=True, interval=250)  # wait for a pause in typing
        self._search_timer.timeout.connect(self._search_now)
        self.search_box.textChanged.connect(lambda _: self._search_timer.start())

        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.documents, 3)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.search_box)
        layout.addWidget(self.results, 2)

        self._ingest_worker = IngestWorker(store_path, embedder)
        self._ingest_worker.progress.connect(self._on_progress)
        self._ingest_worker.file_finished.connect(self._on_file_finished)
        self._ingest_worker.batch_finished.connect(self._on_batch_finished)
        self._ingest_requested.connect(self._ingest_worker.ingest)
        self._search_worker = SearchWorker(store_path, embedder)
        self._search_worker.results.connect(self._on_results)
        self._search_worker.failed.connect(self._on_search_failed)
        self._search_requested.connect(self._search_worker.search)
        for worker, name in ((self._ingest_worker, "michi-ingest"), (self._search_worker, "michi-search")):
            self._close_requested.connect(worker.close)
            start_in_thread(worker, worker.start, name)
        self._shut_down = False
        QCoreApplication.instance().aboutToQuit.connect(self.shutdown)  # quitting without closing the panel
        self.reload()

    # -- the document list -------------------------------------------------------------------

    def reload(self) -> None:
        """Rebuild the stored rows from the database, keeping rows of files still in a batch."""
        self.documents.blockSignals(True)
        for row in reversed(range(self.documents.topLevelItemCount())):
            if self.documents.topLevelItem(row).data(TITLE, DOCUMENT_ID) is not None:
                self.documents.takeTopLevelItem(row)
        for index, document in enumerate(self.store.documents()):
            item = QTreeWidgetItem()
            item.setText(TITLE, document.title)
            item.setToolTip(TITLE, document.path)
            item.setData(TITLE, DOCUMENT_ID, document.id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(TITLE, Qt.CheckState.Checked if document.enabled else Qt.CheckState.Unchecked)
            status = document.status if not document.message else f"{document.status}: {document.message}"
            item.setText(STATUS, status)
            item.setToolTip(STATUS, status)
            item.setText(CHUNKS, str(document.chunk_count))
            item.setText(PAGES, str(document.page_count) if document.page_count else "")
            self.documents.insertTopLevelItem(index, item)
        self.documents.blockSignals(False)

    def add_files(self, paths: list[str | Path]) -> None:
        """Queue files (folders are expanded) for indexing; returns at once."""
        files = [str(path) for path in expand_paths(paths)]
        if not files:
            self.status.setText("No supported files there: Michi reads " + ", ".join(SUPPORTED_SUFFIXES))
            return
        for path in files:
            item = QTreeWidgetItem([Path(path).name, "queued", "", ""])
            item.setData(TITLE, PENDING_PATH, path)
            item.setToolTip(TITLE, path)
            self.documents.addTopLevelItem(item)
        self.progress.show()
        self._ingest_requested.emit(files)

    def remove_selected(self) -> None:
        for item in self.documents.selectedItems():
            document_id = item.data(TITLE, DOCUMENT_ID)
            if document_id is not None:
                try:
                    self.store.remove(document_id)
                except StoreError as error:  # a read-only or damaged database: say so, change nothing
                    self.status.setText(f"Could not remove {item.text(TITLE)}: {error}")
                    break
            elif item.data(TITLE, PENDING_PATH) is None:  # a finished file that was never stored
                self.documents.takeTopLevelItem(self.documents.indexOfTopLevelItem(item))
        self.reload()

    def _on_item_changed(self, item: QTreeWidgetItem, column: int) -> None:
        document_id = item.data(TITLE, DOCUMENT_ID)
        if column == TITLE and document_id is not None:
            try:
                self.store.set_enabled(document_id, item.checkState(TITLE) == Qt.CheckState.Checked)
            except StoreError as error:
                self.status.setText(f"Could not change {item.text(TITLE)}: {error}")
                QTimer.singleShot(0, self.reload)  # put the check box back as the store has it

    def _choose_files(self) -> None:
        pattern = " ".join(f"*{suffix}" for suffix in SUPPORTED_SUFFIXES)
        paths, _ = QFileDialog.getOpenFileNames(self, "Add documents", "", f"Documents ({pattern})")
        if paths:
            self.add_files(paths)

    def _pending_item(self, path: str) -> QTreeWidgetItem | None:
        for row in range(self.documents.topLevelItemCount()):
            item = self.documents.topLevelItem(row)
            if item.data(TITLE, PENDING_PATH) == path:
                return item
        return None

    def _on_progress(self, progress: IngestProgress) -> None:
        item = self._pending_item(str(progress.path))
        percent = f" {progress.fraction:.0%}" if progress.stage == "embedding" else ""
        if item is not None:
            item.setText(STATUS, progress.stage + percent)
        self.progress.setValue(int(1000 * (progress.file_index + progress.fraction) / progress.file_count))
        self.status.setText(f"{progress.path.name}: {progress.stage}{percent} "
                            f"(file {progress.file_index + 1} of {progress.file_count})")

    def _on_file_finished(self, result: IngestResult) -> None:
        item = self._pending_item(str(result.path))
        if item is not None:
            if result.document_id is None:  # nothing stored (e.g. a missing file): keep the row
                item.setText(STATUS, f"{result.status}: {result.message}")
                item.setToolTip(STATUS, result.message)
                item.setData(TITLE, PENDING_PATH, None)
            else:
                self.documents.takeTopLevelItem(self.documents.indexOfTopLevelItem(item))
        if result.status == DUPLICATE:
            self.status.setText(f"{result.path.name}: already indexed ({result.message})")
        else:
            self.status.setText(f"{result.path.name}: {result.status}"
                                + (f" ({result.message})" if result.message else ""))
        self.reload()

    def _on_batch_finished(self, unreached: list[str]) -> None:
        for path in unreached:
            item = self._pending_item(path)
            if item is not None:
                item.setText(STATUS, f"{CANCELLED}: the panel was closed before this file")
                item.setData(TITLE, PENDING_PATH, None)
        if not any(self.documents.topLevelItem(row).data(TITLE, PENDING_PATH) is not None
                   for row in range(self.documents.topLevelItemCount())):
            self.progress.hide()

    # -- search preview ------------------------------------------------------------------------

    def _search_now(self) -> None:
        query = self.search_box.text().strip()
        self._search_worker.latest_query = query
        if not query:
            self.results.clear()
            return
        self._search_requested.emit(query)

    def _on_results(self, query: str, passages: list) -> None:
        if query != self.search_box.text().strip():
            return
        self.results.clear()
        if not passages:
            self.results.addItem("No passages found in enabled documents.")
        for passage in passages:
            where = f"{passage.title}, page {passage.page}" if passage.page else passage.title
            snippet = " ".join(passage.text.split())
            item = QListWidgetItem(f"{where}\n{snippet[:240]}{'…' if len(snippet) > 240 else ''}")
            item.setToolTip(snippet)
            item.setData(DOCUMENT_ID, passage.document_id)
            self.results.addItem(item)

    def _on_search_failed(self, query: str, message: str) -> None:
        if query == self.search_box.text().strip():
            self.results.clear()
            self.results.addItem(f"Search failed: {message}")

    # -- shutdown ------------------------------------------------------------------------------

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop the workers without blocking: each thread ends after its current step (about a
        second of embedding at most) and is released then. Safe to call more than once."""
        if self._shut_down:
            return
        self._shut_down = True
        self._ingest_worker.stop()
        self._search_worker.latest_query = None  # any queued search is now stale
        # What the workers still report (the abandoned file's result) is for nobody now.
        self._ingest_worker.progress.disconnect(self._on_progress)
        self._ingest_worker.file_finished.disconnect(self._on_file_finished)
        self._ingest_worker.batch_finished.disconnect(self._on_batch_finished)
        self._search_worker.results.disconnect(self._on_results)
        self._search_worker.failed.disconnect(self._on_search_failed)
        self._close_requested.emit()  # each worker closes its store and quits its own thread
        self.store.close()

    # -- drag and drop -------------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.add_files(paths)

