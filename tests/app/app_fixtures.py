"""Helpers shared by the app's window, worker and overlay tests."""

from __future__ import annotations

import functools
import time

import numpy as np
import torch

from app.model_loader import inference_threads
from app.threads import _running, running_threads
from michi_core.model.model import MichiModel, load_model


@functools.cache
def tiny_model() -> MichiModel:
    """The tiny preset, built once per session, with torch threads set as the app's loader sets them."""
    torch.set_num_threads(inference_threads())
    return load_model(preset_name="tiny").eval()


def end_every_call(qtbot) -> None:
    """Stop any call a test left running and let every worker thread end. Run it after each test,
    even a failed one: a QThread destroyed while running aborts the whole session."""
    for worker in list(_running.values()):
        stop = getattr(worker, "stop", None)
        if stop is not None:
            stop()
    qtbot.wait_until(lambda: not running_threads(), timeout=15_000)


def looping(samples: np.ndarray):
    """A fake-mic source that plays `samples` over and over."""
    position = 0

    def source(frames: int, rate: int) -> np.ndarray:
        nonlocal position
        index = (position + np.arange(frames)) % len(samples)
        position += frames
        return samples[index]

    return source


def run_until(loop, frames: int, timeout: float = 20.0) -> None:
    """Step a ConversationLoop until `frames` frames were processed (waiting for the device)."""
    deadline = time.monotonic() + timeout
    done = 0
    while done < frames:
        assert time.monotonic() < deadline, f"only {done} of {frames} frames arrived in {timeout} s"
        if loop.step_once():
            done += 1
        else:
            time.sleep(0.004)
