"""A fake `sounddevice` for the audio tests: a scripted mic, an acoustic loopback, faults on demand.

Built on the app's `VirtualSoundDevice` (the same thread-driven stream the `--self-test`
uses) and adds what only tests need: a mic signal chosen per test, the speaker looped back
into the mic after a known delay, status flags on the next block, a device that refuses to
open, and a device that disappears while running.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from app.audio.file_device import CallbackFlags, PortAudioError, VirtualDeviceSpec, VirtualSoundDevice


class FakeSoundDevice(VirtualSoundDevice):
    def __init__(
        self,
        devices: list[VirtualDeviceSpec] | None = None,
        *,
        speed: float = 1.0,
        mic_source: Callable[[int, int], np.ndarray] | None = None,  # (frames, rate) -> samples
        loopback_gain: float = 0.0,  # how much of the speaker the mic hears
        loopback_delay: int = 0,  # extra samples of acoustic delay (on top of one block)
        fail_open: str | None = None,  # PortAudio's message when opening a stream
    ) -> None:
        super().__init__(devices, speed=speed)
        self.mic_source = mic_source
        self.loopback_gain = loopback_gain
        self.fail_open = fail_open
        self._air = np.zeros(loopback_delay, dtype=np.float32)  # sound on its way speaker -> mic
        self._air_lock = threading.Lock()
        self._next_status: CallbackFlags | None = None
        self._unplugged = threading.Event()
        self.played_blocks: list[np.ndarray] = []
        open_stream = self.Stream

        def stream(**kwargs):
            if self.fail_open is not None:
                raise PortAudioError(self.fail_open)
            self._unplugged.clear()
            return open_stream(**kwargs)

        self.Stream = stream

    def capture(self, frames: int, samplerate: int) -> np.ndarray:
        if self._unplugged.is_set():
            raise PortAudioError("Unanticipated host error [PaErrorCode -9999]: device unplugged")
        mic = np.zeros(frames, dtype=np.float32)
        if self.mic_source is not None:
            mic += self.mic_source(frames, samplerate)
        with self._air_lock:
            heard, self._air = self._air[:frames], self._air[frames:]
        mic[: len(heard)] += self.loopback_gain * heard
        return mic

    def render(self, played: np.ndarray, samplerate: int) -> None:
        self.played_blocks.append(played)
        with self._air_lock:
            self._air = np.concatenate([self._air, played])

    def status(self) -> CallbackFlags:
        status, self._next_status = self._next_status, None
        return status or CallbackFlags()

    # -- what tests do --------------------------------------------------------------------------
    def inject_status(self, **flags: bool) -> None:
        """The next block reports these flags (e.g. input_overflow=True)."""
        self._next_status = CallbackFlags(**flags)

    def unplug(self) -> None:
        """The running device disappears: its stream ends without being asked to."""
        self._unplugged.set()

    def played(self) -> np.ndarray:
        return np.concatenate(self.played_blocks) if self.played_blocks else np.zeros(0, dtype=np.float32)


def tone(frequency: float, amplitude: float = 0.3) -> Callable[[int, int], np.ndarray]:
    """A mic source: a continuous sine (its phase carries over from block to block)."""
    position = 0

    def source(frames: int, rate: int) -> np.ndarray:
        nonlocal position
        t = (position + np.arange(frames)) / rate
        position += frames
        return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)

    return source


def counter() -> Callable[[int, int], np.ndarray]:
    """A mic source whose sample k is k * 1e-6: tells exactly which samples came through."""
    position = 0

    def source(frames: int, rate: int) -> np.ndarray:
        nonlocal position
        block = (position + np.arange(frames)) * 1e-6
        position += frames
        return block.astype(np.float32)

    return source
