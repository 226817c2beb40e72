"""Running work off the GUI thread, and letting it go without ever blocking the GUI: the one home
of thread lifetime for the whole app.

- `start_in_thread`: a long-lived worker QObject (the model loader, the inference worker, the
  documents panel's indexer and searcher) moved to its own QThread;
- `run_job`: one function run once in its own thread, its result or error delivered back to a
  widget (importing a voice file, encoding a voice, a preview);
- `wait_for_threads`: at application exit only, a bounded wait for whatever still runs.

A QThread destroyed while it runs aborts the whole process, and a worker in the middle of
loading a model cannot be interrupted. So a thread and its worker stay referenced here from
start until the thread has finished, whoever started them and whether or not their window
still exists; only at application exit does anyone wait on them, and then for a bounded time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

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


class Job(QObject):
    """Runs one function in its own thread, then reports `done(result)` or `failed(message)`.

    The function must not touch widgets, and must open its own store: SQLite connections
    belong to the thread that opened them.
    """

    done = Signal(object)
    failed = Signal(str)

    def __init__(self, function: Callable[[], object]):
        super().__init__()
        self._function = function

    @Slot()
    def run(self) -> None:
        try:
            self.done.emit(self._function())
        except Exception as error:  # noqa: BLE001 - whatever broke, the widget shows it instead of dying
            log.exception("background job failed")
            self.failed.emit(str(error) or type(error).__name__)
        finally:
            QThread.currentThread().quit()


def run_job(function: Callable[[], object], name: str, on_done: Callable[[object], None],
            on_failed: Callable[[str], None]) -> Job:
    """Start `function` in a new thread. The callbacks must be methods of a QObject living in the
    GUI thread (a widget's): Qt then runs them there, and drops them if that object is gone."""
    job = Job(function)
    job.done.connect(on_done, Qt.ConnectionType.QueuedConnection)
    job.failed.connect(on_failed, Qt.ConnectionType.QueuedConnection)
    start_in_thread(job, job.run, name)
    return job
