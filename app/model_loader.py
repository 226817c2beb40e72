"""Loading the model off the GUI thread.

The first load of the embedded model dequantizes the GGUF backbone (tens of seconds on a
laptop CPU), and the first step of a fresh model is several times slower than the next ones
(kernels and caches warm up). Both happen here, in a worker thread, while the window shows a
progress dialog and stays responsive; a failure becomes a message, never an exception in the
event loop.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PySide6.QtCore import QObject, QThread, Signal

from michi_core.model.model import DEFAULT_CHECKPOINT, CheckpointError, MichiModel, load_model
from michi_core.session.engine import DuplexSession

log = logging.getLogger(__name__)

def inference_threads() -> int:
    """Torch CPU threads for the model: all cores but one.

    The spare core is for the audio callback, the GUI and the echo canceller. Without it, torch's
    worker threads (which spin while waiting for work) starve them: on a 2-core machine a tiny-model
    step measured 1000 ms with 2 torch threads and 5 ms with 1.
    """
    return max(1, (os.cpu_count() or 2) - 1)


LoadFunction = Callable[[str | None, str | None], MichiModel]  # (checkpoint, preset) -> model


@dataclass
class LoadRequest:
    checkpoint: str | None = None  # a checkpoint directory; None: the embedded default
    preset_name: str | None = None  # a preset instead of the default (tests, --preset)
    compute_device: str = "cpu"

    def describe(self) -> str:
        if self.checkpoint:
            return f"checkpoint {self.checkpoint}"
        if self.preset_name:
            return f"{self.preset_name} preset"
        if (DEFAULT_CHECKPOINT / "config.json").is_file():
            return "embedded model"
        return "small preset"


@dataclass
class LoadedModel:
    model: MichiModel
    name: str  # what the status bar calls it
    compute_device: str
    seconds: float  # how long loading took


def user_message(error: BaseException) -> str:
    """What went wrong, in words a user can act on."""
    if isinstance(error, CheckpointError):
        return f"The checkpoint cannot be used: {error}"
    if isinstance(error, FileNotFoundError):
        return f"A model file is missing: {error}"
    if isinstance(error, MemoryError):
        return "Not enough memory to load this model. Close other programs or choose a smaller model."
    return f"{type(error).__name__}: {error}"


class ModelLoader(QObject):
    progress = Signal(str)  # what it is doing now
    loaded = Signal(object)  # LoadedModel
    failed = Signal(str)  # a message for the user
    finished = Signal()

    def __init__(self, request: LoadRequest, load: LoadFunction = load_model):
        super().__init__()
        self.request = request
        self._load = load

    def start(self) -> None:
        """Runs in the worker thread (connected to QThread.started)."""
        request = self.request
        started = time.perf_counter()
        try:
            if request.compute_device == "cuda" and not torch.cuda.is_available():
                raise RuntimeError("CUDA was chosen but this computer or PyTorch build has no usable GPU; "
                                   "choose CPU in Settings")
            self.progress.emit(f"Loading the {request.describe()}… (the first time takes a while)")
            torch.set_num_threads(inference_threads())
            model = self._load(request.checkpoint, request.preset_name)
            self.progress.emit("Warming up…")
            self._warm_up(model, request.compute_device)
        except Exception as error:  # noqa: BLE001 — any failure must reach the user, not kill the thread
            log.exception("model load failed")
            self.failed.emit(user_message(error))
        else:
            seconds = time.perf_counter() - started
            log.info("model ready in %.1f s: %s on %s", seconds, request.describe(), request.compute_device)
            self.loaded.emit(LoadedModel(model, model_name(model, request), request.compute_device, seconds))
        self.finished.emit()
        QThread.currentThread().quit()

    @staticmethod
    def _warm_up(model: MichiModel, compute_device: str) -> None:
        """Move to the device and take one throwaway step, so the call's first frame is on time."""
        session = DuplexSession(model, device=compute_device)
        session.step(np.zeros(model.config.codec.frame_size, dtype=np.float32))


def model_name(model: MichiModel, request: LoadRequest) -> str:
    if request.checkpoint:
        return f"{model.config.preset} ({request.checkpoint})"
    return model.config.preset

