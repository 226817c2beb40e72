"""Virtual sound devices with the `sounddevice` module's interface, driven by a thread.

`AudioIO` takes its sounddevice module as an argument. These classes stand in for it where
there is no sound card, or where the sound must be known exactly:

- `VirtualSoundDevice`: the part of the sounddevice API that `AudioIO` uses (`Stream`,
  `query_devices`, `query_hostapis`, `check_*_settings`, `default`, the exception types), with
  a thread that calls the stream callback block by block, at real time or faster. Subclasses
  decide what the microphone hears (`capture`) and what happens to what is played (`render`).
- `FileAudioDevice`: the microphone reads a WAV file (then silence), everything played is
  collected; the app's `--self-test` runs a whole call through it.

The callback sees float32 `(frames, channels)` arrays like PortAudio's, and a status object
whose flags read like `sounddevice.CallbackFlags`.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import soundfile

from michi_core.audio import load_audio
from michi_core.model.config import CodecConfig

log = logging.getLogger(__name__)


class PortAudioError(Exception):
    """Raised like `sounddevice.PortAudioError` (refused format, missing device)."""


class CallbackStop(Exception):
    """Raised by a callback to stop the stream after this block, like `sounddevice.CallbackStop`."""


class CallbackAbort(Exception):
    """Raised by a callback to abort the stream at once, like `sounddevice.CallbackAbort`."""


@dataclass
class CallbackFlags:
    """The status a callback receives; false when nothing went wrong."""

    input_underflow: bool = False
    input_overflow: bool = False
    output_underflow: bool = False
    output_overflow: bool = False
    priming_output: bool = False

    def __bool__(self) -> bool:
        return any(vars(self).values())


@dataclass
class VirtualDeviceSpec:
    """One device in the virtual device list."""

    name: str
    max_input_channels: int = 1
    max_output_channels: int = 1
    default_samplerate: float = float(CodecConfig.sample_rate)
    rates: tuple[int, ...] | None = None  # accepted rates; None: any
    min_channels: int = 1  # 2 for a device that refuses mono


@dataclass
class _Default:
    device: list[int] = field(default_factory=lambda: [0, 0])  # (input, output) like sd.default.device


class VirtualSoundDevice:
    """A stand-in for the `sounddevice` module; subclass `capture` and `render`."""

    PortAudioError = PortAudioError
    CallbackStop = CallbackStop
    CallbackAbort = CallbackAbort
    CallbackFlags = CallbackFlags

    def __init__(self, devices: list[VirtualDeviceSpec] | None = None, *, speed: float = 1.0) -> None:
        assert speed > 0, "speed is a multiple of real time: 1.0 real time, math.inf as fast as possible"
        self.devices = devices if devices is not None else [
            VirtualDeviceSpec("Michi virtual device", max_input_channels=1, max_output_channels=1)
        ]
        self.speed = speed
        self.default = _Default(
            [self._first_index("max_input_channels"), self._first_index("max_output_channels")]
        )
        self.Stream = functools.partial(VirtualStream, self)
        self.streams: list[VirtualStream] = []  # every stream opened, newest last

    # -- what a subclass decides ---------------------------------------------------------------------
    def capture(self, frames: int, samplerate: int) -> np.ndarray:
        """The next `frames` mono mic samples. Default: silence."""
        return np.zeros(frames, dtype=np.float32)

    def render(self, played: np.ndarray, samplerate: int) -> None:
        """Receives each block the stream played (mono, a copy). Default: discard."""

    def status(self) -> CallbackFlags:
        """The status flags of the next block. Default: none."""
        return CallbackFlags()

    # -- the sounddevice API ---------------------------------------------------------------------------
    def _first_index(self, key: str) -> int:
        return next((i for i, d in enumerate(self.devices) if getattr(d, key) > 0), -1)

    def _info(self, index: int) -> dict[str, Any]:
        d = self.devices[index]
        return {
            "name": d.name, "index": index, "hostapi": 0,
            "max_input_channels": d.max_input_channels, "max_output_channels": d.max_output_channels,
            "default_samplerate": d.default_samplerate,
            "default_low_input_latency": 0.01, "default_low_output_latency": 0.01,
            "default_high_input_latency": 0.1, "default_high_output_latency": 0.1,
        }

    def query_devices(self, device: int | str | None = None, kind: str | None = None) -> Any:
        if kind is not None:
            index = self.default.device[0 if kind == "input" else 1]
            return self._info(index) if index >= 0 else {}
        if device is None:
            return [self._info(i) for i in range(len(self.devices))]
        if isinstance(device, str):
            device = next((i for i, d in enumerate(self.devices) if d.name == device), -1)
        if not 0 <= device < len(self.devices):
            raise PortAudioError(f"Error querying device {device}")
        return self._info(device)

    def query_hostapis(self, index: int | None = None) -> Any:
        apis = [{"name": "Virtual", "devices": list(range(len(self.devices)))}]
        return apis if index is None else apis[index]

    def _check(self, device: int | None, channels: int, samplerate: float, key: str) -> None:
        index = self.default.device[0 if key == "max_input_channels" else 1] if device is None else device
        if not 0 <= index < len(self.devices):
            raise PortAudioError(f"Invalid device [PaErrorCode -9996]: {device}")
        spec = self.devices[index]
        if not spec.min_channels <= channels <= getattr(spec, key):
            raise PortAudioError(
                f"Invalid number of channels [PaErrorCode -9998]: {channels} on {spec.name!r}"
            )
        if spec.rates is not None and int(samplerate) not in spec.rates:
            raise PortAudioError(f"Invalid sample rate [PaErrorCode -9997]: {samplerate} on {spec.name!r}")

    def check_input_settings(self, device=None, channels=None, dtype=None, extra_settings=None,
                             samplerate=None):
        self._check(device, channels or 1, samplerate or 0, "max_input_channels")

    def check_output_settings(self, device=None, channels=None, dtype=None, extra_settings=None,
                              samplerate=None):
        self._check(device, channels or 1, samplerate or 0, "max_output_channels")


class VirtualStream:
    """A duplex stream whose thread calls `callback` every block, paced by the device's speed."""

    def __init__(
        self, backend: VirtualSoundDevice, *, samplerate: float, blocksize: int, device: tuple,
        channels: tuple, dtype: str = "float32", callback: Any, finished_callback: Any = None,
        latency: Any = None, **_: Any,
    ) -> None:
        assert dtype == "float32", "the virtual device speaks float32 only"
        assert blocksize > 0, "the virtual device needs a fixed block size"
        in_channels, out_channels = channels
        for index, n, key in ((device[0], in_channels, "max_input_channels"),
                              (device[1], out_channels, "max_output_channels")):
            backend._check(index, n, samplerate, key)
        self.backend = backend
        self.samplerate = float(samplerate)
        self.blocksize = blocksize
        self.device = device
        self.channels = channels
        self.latency = (blocksize / samplerate, blocksize / samplerate)  # one block each way
        self.callback = callback
        self.finished_callback = finished_callback
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._finished_once = threading.Lock()
        self._finished_called = False
        self.closed = False
        backend.streams.append(self)

    @property
    def active(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        assert not self.closed, "a closed stream cannot start again: open a new one"
        if self.active:
            return
        self._stop_event.clear()
        self._thread = threading.Thread(target=self._run, name="virtual-audio", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        rate, frames = int(self.samplerate), self.blocksize
        indata = np.zeros((frames, self.channels[0]), dtype=np.float32)
        outdata = np.zeros((frames, self.channels[1]), dtype=np.float32)
        period = frames / rate / self.backend.speed
        deadline = time.perf_counter()
        block = 0
        try:
            while not self._stop_event.is_set():
                indata[:] = self.backend.capture(frames, rate)[:, None]
                outdata.fill(0.0)
                time_info = SimpleNamespace(currentTime=block * frames / rate, inputBufferAdcTime=0.0,
                                            outputBufferDacTime=0.0)
                try:
                    self.callback(indata, outdata, frames, time_info, self.backend.status())
                except CallbackStop:
                    self.backend.render(outdata[:, 0].copy(), rate)
                    break
                except CallbackAbort:
                    break
                self.backend.render(outdata[:, 0].copy(), rate)
                block += 1
                if math.isfinite(period):
                    deadline += period
                    delay = deadline - time.perf_counter()
                    if delay > 0:
                        self._stop_event.wait(delay)
        except Exception:  # like PortAudio: an exception in the callback ends the stream
            log.exception("exception in the audio callback; the stream stops")
        finally:
            self._finish()

    def _finish(self) -> None:
        with self._finished_once:
            if self._finished_called:
                return
            self._finished_called = True
        if self.finished_callback is not None:
            self.finished_callback()

    def stop(self) -> None:
        self._stop_event.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    abort = stop

    def close(self) -> None:
        self.stop()
        self.closed = True


class FileAudioDevice(VirtualSoundDevice):
    """The microphone plays a WAV file (then silence); everything the stream plays is kept.

    `speed` is a multiple of real time; `math.inf` runs as fast as the threads go (the reader
    must then keep up, or `AudioIO` drops and counts the oldest mic audio).
    """

    def __init__(
        self, mic_wav: str | Path, *, samplerate: int = CodecConfig.sample_rate, speed: float = 1.0
    ) -> None:
        spec = VirtualDeviceSpec(f"file: {Path(mic_wav).name}", default_samplerate=float(samplerate))
        super().__init__([spec], speed=speed)
        self.mic = load_audio(mic_wav, samplerate)  # mono, resampled
        self.samplerate = samplerate
        self.mic_finished = threading.Event()  # set once the whole file has been captured
        self._position = 0
        self._played: list[np.ndarray] = []

    def capture(self, frames: int, samplerate: int) -> np.ndarray:
        assert samplerate == self.samplerate, f"the file device runs at {self.samplerate} Hz"
        block = np.zeros(frames, dtype=np.float32)
        chunk = self.mic[self._position : self._position + frames]
        block[: len(chunk)] = chunk
        self._position += frames
        if self._position >= len(self.mic):
            self.mic_finished.set()
        return block

    def render(self, played: np.ndarray, samplerate: int) -> None:
        self._played.append(played)

    def played(self) -> np.ndarray:
        """Everything the stream played so far, at the device rate."""
        return np.concatenate(self._played) if self._played else np.zeros(0, dtype=np.float32)

    def save_played(self, path: str | Path) -> None:
        soundfile.write(str(path), self.played(), self.samplerate, subtype="FLOAT")
