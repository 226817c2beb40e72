"""Run builder jobs in worker processes, a bounded number in flight, results back in the parent.

Workers hold the expensive things (a piper session, a Whisper model) in process globals set up
by an initializer; they write audio files and return manifest rows; only the parent writes the
manifest. The parent asks for the next task only when a slot is free, and asks again after every
result, so a builder can hold back while enough audio is on its way and ask for more if the
finished audio turns out shorter than it guessed.

Processes are spawned, not forked: the parent may already run torch/onnxruntime threads, and
forking a process with live thread pools can deadlock the child.
"""

from __future__ import annotations

import functools
import multiprocessing
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, TypeVar

Task = TypeVar("Task")


def run_parallel(tasks: Iterable[Task] | Callable[[], Task | None], work: Callable[[Task], Any], *,
                 workers: int, initializer: Callable[..., None], initargs: tuple = (),
                 on_result: Callable[[Task, Any], None]) -> None:
    """Call work(task) in `workers` processes; on_result(task, result or raised exception) in order
    of completion. tasks: a list, or a function giving the next task or None for "none now" (the
    run ends when it says None with nothing in flight). work and initializer must be module-level
    functions (they are pickled)."""
    assert workers >= 1, "need at least one worker process"
    if not callable(tasks):
        tasks = functools.partial(next, iter(tasks), None)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=initializer, initargs=initargs) as pool:
        in_flight: dict[Any, Task] = {}
        while True:
            while len(in_flight) < 2 * workers:  # keep every worker fed, no more
                task = tasks()
                if task is None:
                    break
                in_flight[pool.submit(work, task)] = task
            if not in_flight:
                return
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                task = in_flight.pop(future)
                error = future.exception()
                on_result(task, error if error is not None else future.result())
