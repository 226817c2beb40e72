"""Running a worker QObject in its own QThread, and letting it go without ever blocking the GUI.

A QThread destroyed while it runs aborts the whole process, and a worker in the middle of
loading a model cannot be interrupted. So a thread and its worker stay referenced here from
start until the thread has finished, whoever started them and whether or not their window
still exists; only at application exit does anyone wait on them, and then for a bounded time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QObject, QThread, Slot

log = logging.getLogger(__name__)

_running: dict[QThread, QObject] = {}


class _Releaser(QObject):
    """Lives in the GUI thread, so a finished thread's last references are dropped there and
    never from inside the thread that is ending."""

    @Slot()
    def release(self) -> None:
        thread = self.sender()
        _running.pop(thread, None)


_releaser: _Releaser | None = None


def start_in_thread(worker: QObject, entry: Callable[[], None], name: str) -> QThread:
    """Move `worker` to a new thread and call `entry` (one of its slots) there.

    The worker must end its thread when done: connect its last signal to `thread.quit`, or call
    `QThread.currentThread().quit()` at the end of `entry`.
    """
    global _releaser
    _releaser = _releaser or _Releaser()
    thread = QThread()
    thread.setObjectName(name)
    worker.moveToThread(thread)
    thread.started.connect(entry)
    thread.finished.connect(_releaser.release)
    _running[thread] = worker
    thread.start()
    return thread


def running_threads() -> list[QThread]:
    return [thread for thread in _running if not thread.isFinished()]


def wait_for_threads(timeout_ms: int) -> bool:
    """At application exit only: give workers a bounded moment to finish. True if all ended."""
    for thread in list(_running):
        if not thread.wait(timeout_ms):
            log.warning("thread %s is still busy at exit", thread.objectName())
    return not running_threads()
