"""Starting and ending the desktop app (what `michi` and `make run` do)."""

from __future__ import annotations

import logging
import os
import signal
import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from app.model_loader import LoadRequest
from app.settings import APPLICATION, ORGANIZATION
from app.theme import apply_theme

log = logging.getLogger(__name__)

EXIT_WAIT_MS = 3000  # at exit, how long a busy worker may take to finish its current step


def application() -> QApplication:
    """The one QApplication, created on first use and themed."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
        app.setOrganizationName(ORGANIZATION)
        app.setApplicationName(APPLICATION)
        app.setApplicationDisplayName("Michi")
    apply_theme(app)
    return app


def load_request_from_args(preset_name: str | None, checkpoint: str | None) -> LoadRequest | None:
    """A model named on the command line outranks the one chosen in Settings."""
    if preset_name is None and checkpoint is None:
        return None
    return LoadRequest(checkpoint=checkpoint, preset_name=preset_name)


def run_app(preset_name: str | None = None, checkpoint: str | None = None) -> int:
    from app.main_window import MainWindow

    app = application()
    window = MainWindow(load_request=load_request_from_args(preset_name, checkpoint))
    window.show()
    warn_about_the_store(window)
    # Ctrl+C in the terminal closes the window like the close button (a live call is saved).
    # Python runs signal handlers only between bytecodes, so a timer lets it in now and then.
    signal.signal(signal.SIGINT, lambda *_: window.close())
    wake_python = QTimer(interval=250)
    wake_python.timeout.connect(lambda: None)
    wake_python.start()
    code = app.exec()
    end_workers(code)
    return code


def warn_about_the_store(window) -> None:
    """Say at once when Michi's database cannot be saved to (damaged, read-only, no folder):
    the window still opens, but calls, documents and voices would be lost without a word."""
    from michi_core.stores.database import describe

    problem = describe(window.store_path)
    if problem:
        window.show_error("Michi cannot save", problem)


def end_workers(code: int) -> None:
    """Give workers a bounded moment to finish; never hang on exit.

    A model that is still loading cannot be interrupted, and Qt aborts the process if a running
    QThread is destroyed, so when something is still busy the process exits right away instead
    (nothing it could be writing: calls are saved before their worker ends).
    """
    from app.threads import wait_for_threads

    if not wait_for_threads(EXIT_WAIT_MS):
        log.warning("exiting with a worker still busy")
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
