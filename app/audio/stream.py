"""`AudioIO`: one full-duplex sounddevice stream between the sound card and the model.

Design, and why:

- **One duplex stream** (`sd.Stream`) at the device's native rate. Mic and speaker share one
  clock and one callback, so the far-end reference the echo canceller needs is exact: the
  callback records, next to each mic block, the very samples it handed to the speaker in the
  same call (silence included when it had nothing to play).
- **The callback is trivial**: copy mic + played samples into one two-column ring, copy the
  playback ring into the device buffer, update counters. No resampling, no array allocation,
  no locks, no logging, no Qt. Everything it touches is preallocated in `start()`.
- **Rings hold device-rate audio; rate conversion lives on the worker side.** A streaming
  `soxr.ResampleStream` (stateful, so block edges are seamless) converts mic + reference
  device rate -> model rate in `read_mic_frame`, and model rate -> device rate in
  `write_playback`. Resampling allocates and costs ~0.1 ms per frame; the worker can afford
  that, the callback cannot; soxr's low-latency quality is used (see RESAMPLE_QUALITY). Mic
  and reference are resampled together as two channels of one stream, so they stay
  sample-aligned. When the device runs at the model rate no resampler is built at all
  (bit-exact path).
- **Clocks** count samples, never wall time: `captured_samples` (mic audio delivered by the
  device), `played_samples` (model audio actually handed to the device, excluding the silence
  played on underrun). The transcript and the latency measures sync to `played_samples`.
- **Real-time priority**: on Linux the callback asks, once, for SCHED_FIFO on PortAudio's
  thread (what PortAudio's own ALSA option does), where the user may (root, rtprio limit).
  On a loaded 2-core machine this took the worst callback from 6-15 ms to 0.3-0.5 ms
  (benchmarks/audio_callback_bench.py). Refused: normal priority, noted in `stats()`.
  Virtual devices (an injected object, not the sounddevice module) are driven by Python
  threads that must never run real-time, so they are left alone.
- **Errors**: `start()` raises `AudioDeviceError` with a message a user can act on when a
  device is missing or refuses the format. After a successful start, a stream that dies
  (device unplugged, an exception in the callback) is reported through `on_error(message)`,
  called from the audio thread; the owner then calls `stop()` and `start()` again.

Threads: the PortAudio thread runs `_callback`; one worker thread calls `read_mic_frame`,
`played_reference`, `write_playback` and `clear_playback`; any thread may read the clocks,
levels and `stats()`. The sounddevice module is injected (`sd=`), so tests and `--self-test`
drive this class with a virtual device instead of a sound card.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import soxr

from app.audio.ring import FloatRing
from michi_core.model.config import CodecConfig

log = logging.getLogger(__name__)

STATS_WINDOW = 1 << 16  # callbacks kept for percentiles: ~22 min of 20 ms blocks
FALLBACK_RATES = (48_000, 44_100, 32_000, 24_000, 16_000)  # tried after the devices' own rates
# soxr "LQ": flat to 9 kHz, 16-bit precision, ~2 ms of delay per direction in streaming use;
# "HQ" (the default) holds back ~30 ms per direction, which a live call pays twice.
RESAMPLE_QUALITY = "LQ"


class AudioDeviceError(RuntimeError):
    """The audio device is missing, refused the format, or failed while running."""


@dataclass(frozen=True)
class DeviceInfo:
    """One entry of the device list shown in Settings; `name` is what is saved."""

    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate: float


@dataclass
class AudioStats:
    """What the audio layer counted since the stream was created (cumulative across restarts)."""

    callbacks: int
    underruns: int  # callbacks that found less model audio than the device asked for
    xruns: int  # callbacks with any PortAudio status flag set
    input_overflows: int
    input_underflows: int
    output_underflows: int
    output_overflows: int
    mic_dropped_samples: int  # device-rate mic samples lost because the worker did not read them
    playback_dropped_samples: int  # device-rate model samples overwritten before they were played
    block_ms: float  # the device block period the callback must stay far below
    worst_callback_ms: float  # over all callbacks
    slow_callbacks: int  # callbacks that took over a quarter of the block period (GIL waits, preemption)
    p50_callback_ms: float  # over the last STATS_WINDOW callbacks
    p99_callback_ms: float
    max_callback_gap_ms: float  # longest time between two callback starts (late callbacks show here)
    realtime: bool | None  # the callback thread got real-time priority; None: not asked


def _device_list(sd: Any) -> list[dict]:
    return [dict(d) for d in sd.query_devices()]


def list_devices(sd: Any = None) -> tuple[list[DeviceInfo], list[DeviceInfo]]:
    """The (input devices, output devices) PortAudio can see, for the Settings panel."""
    sd = _default_sd(sd)
    hostapis = [h["name"] for h in sd.query_hostapis()]
    infos = [
        DeviceInfo(
            index=d["index"], name=d["name"], hostapi=hostapis[d["hostapi"]],
            max_input_channels=d["max_input_channels"], max_output_channels=d["max_output_channels"],
            default_samplerate=float(d["default_samplerate"]),
        )
        for d in _device_list(sd)
    ]
    return ([d for d in infos if d.max_input_channels > 0], [d for d in infos if d.max_output_channels > 0])


def resolve_device(name: str | int | None, kind: str, sd: Any = None) -> int | None:
    """Index of the saved device `name` (exact, then case-insensitive substring), or None.

    None means "the system default": a saved device that is gone (unplugged headset) must not
    stop the app from starting, so it falls back to the default with a warning.
    """
    assert kind in ("input", "output"), "kind is 'input' or 'output'"
    if name is None or name == "":
        return None
    sd = _default_sd(sd)
    channels_key = f"max_{kind}_channels"
    candidates = [d for d in _device_list(sd) if d[channels_key] > 0]
    if isinstance(name, int):
        if any(d["index"] == name for d in candidates):
            return name
    else:
        for match in (lambda d: d["name"] == name, lambda d: name.lower() in d["name"].lower()):
            found = [d for d in candidates if match(d)]
            if found:
                return found[0]["index"]
    log.warning("%s device %r not found; using the system default", kind, name)
    return None


REALTIME_PRIORITY = 10  # SCHED_FIFO 1..99: above every normal thread, below audio servers (JACK, PipeWire)


def _raise_thread_priority() -> bool:
    """SCHED_FIFO for the calling thread (Linux: pid 0 is the thread). False where not permitted."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
        return True
    except OSError:
        return False


def _default_sd(sd: Any) -> Any:
    if sd is not None:
        return sd
    import sounddevice

    return sounddevice


class AudioIO:
    """One duplex stream; the worker reads 24 kHz mic frames and writes 24 kHz model audio.

    Satisfies `app.audio_port.AudioPort`.
    """

    def __init__(
        self,
        *,
        sd: ModuleType | Any = None,
        input_device: str | int | None = None,  # saved name, index, or None for the default
        output_device: str | int | None = None,
        device_rate: int | None = None,  # None: the devices' native rate
        model_rate: int = CodecConfig.sample_rate,
        block_ms: float = 20.0,  # device block: latency vs. robustness against a busy CPU
        latency: str | float = "low",  # PortAudio's suggested latency ('low', 'high' or seconds)
        ring_seconds: float = 2.0,  # mic audio kept for a late worker; model audio queued ahead
        on_error: Callable[[str], None] | None = None,
        realtime: bool = True,  # ask for SCHED_FIFO on the callback thread (Linux, real devices only)
    ) -> None:
        self._sd = _default_sd(sd)
        real_device = isinstance(self._sd, ModuleType)  # the sounddevice module, not a virtual device
        self._realtime_requested = realtime and real_device and hasattr(os, "sched_setscheduler")
        self._want_realtime = False  # set at start(): the next callback asks for the priority
        self._realtime: bool | None = None
        self._input_request = input_device
        self._output_request = output_device
        self._rate_request = device_rate
        self.model_rate = model_rate
        self.block_ms = block_ms
        self.latency = latency
        self.ring_seconds = ring_seconds
        self.on_error = on_error
        self.device_name = "not started"
        self.device_rate: int | None = None
        self.stream_latency_s = 0.0  # input + output latency PortAudio reports, for the AEC hint
        self._stream: Any = None
        self._running = False
        self._stopping = False
        self._callback_error: str | None = None
        # Clocks and counters, cumulative across restarts.
        self._device_captured = 0
        self._device_played = 0
        self._callbacks = 0
        self._underruns = 0
        self._xruns = 0
        self._flags = {"input_overflow": 0, "input_underflow": 0, "output_underflow": 0, "output_overflow": 0}
        self._worst_s = 0.0
        self._slow_callbacks = 0
        self._slow_s = math.inf  # a quarter of the block period, set with the block size
        self._durations = np.zeros(STATS_WINDOW, dtype=np.float64)
        self._starts = np.zeros(STATS_WINDOW, dtype=np.float64)
        self._mic_level = 0.0
        self._output_level = 0.0
        self._playback_started = False  # underruns count only once the model has produced audio
        self._flush_until = 0  # playback ring position the worker asked to discard up to
        self._flushed_until = 0  # ... and the one the callback has honoured
        self._last_reference: np.ndarray | None = None
        self._mic_dropped_before = 0  # drops of rings replaced at a rate change
        self._playback_dropped_before = 0
        self._capture: FloatRing | None = None
        self._playback: FloatRing | None = None
        # model-rate samples inside the output resampler, not yet in the ring; set before the rings,
        # because the GUI thread reads playback_queued_samples while a stream starts
        self._resampler_held = 0.0

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        """Open and start the stream; raises AudioDeviceError with a user-facing message."""
        if self._running:
            return
        sd = self._sd
        in_index = resolve_device(self._input_request, "input", sd)
        out_index = resolve_device(self._output_request, "output", sd)
        in_info, out_info = self._query(in_index, "input"), self._query(out_index, "output")
        rate, in_channels, out_channels = self._choose_format(in_info, out_info)
        self._prepare_buffers(rate, in_channels, out_channels)
        self._stopping = False
        self._callback_error = None
        self._want_realtime = self._realtime_requested  # a new stream runs on a new thread
        self._running = True  # before the first callback: a stream that dies at once must read as stopped
        try:
            self._stream = sd.Stream(
                samplerate=rate, blocksize=self._blocksize, device=(in_info["index"], out_info["index"]),
                channels=(in_channels, out_channels), dtype="float32", latency=self.latency,
                callback=self._callback, finished_callback=self._finished,
            )
            self._stream.start()
        except (sd.PortAudioError, ValueError) as error:
            self.stop()  # reported by the exception, not also through on_error
            raise AudioDeviceError(
                f"could not open audio devices {in_info['name']!r} (mic) and {out_info['name']!r} "
                f"(speaker) at {rate} Hz: {error}. Pick other devices in Settings > Audio."
            ) from error
        latency = self._stream.latency
        self.stream_latency_s = float(sum(latency)) if isinstance(latency, (tuple, list)) else float(latency)
        self.device_name = f"{in_info['name']} / {out_info['name']} @ {rate} Hz"
        log.info("audio started: %s, block %d, latency %.1f ms", self.device_name, self._blocksize,
                 1000 * self.stream_latency_s)

    def stop(self) -> None:
        """Stop and close the stream. Safe to call twice, or after the device died."""
        self._stopping = True
        self._running = False
        if self._stream is not None and self._realtime is False:
            log.info("the audio callback ran at normal priority (real-time scheduling not permitted)")
        self._close_stream()

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        try:
            stream.abort()  # drop what is queued in the device: stopping must be quick
        except Exception as error:  # a device that is gone may refuse even that
            log.warning("audio stream abort failed: %s", error)
        try:
            stream.close()
        except Exception as error:
            log.warning("audio stream close failed: %s", error)

    @property
    def running(self) -> bool:
        return self._running

    # -- format -----------------------------------------------------------------------------------
    def _query(self, index: int | None, kind: str) -> dict:
        try:
            info = self._sd.query_devices(kind=kind) if index is None else self._sd.query_devices(index)
        except (self._sd.PortAudioError, ValueError) as error:
            raise AudioDeviceError(f"no {kind} audio device available ({error}); connect one") from error
        if not info:  # the fake and PortAudio return an empty result when there is no default
            raise AudioDeviceError(f"no {kind} audio device available; connect one")
        return dict(info)

    def _choose_format(self, in_info: dict, out_info: dict) -> tuple[int, int, int]:
        """The first rate both devices accept, with mono where they take it (else 2 channels)."""
        sd = self._sd
        if self._rate_request is not None:
            rates = [self._rate_request]
        else:
            native = [int(out_info["default_samplerate"]), int(in_info["default_samplerate"])]
            rates = list(dict.fromkeys(native + list(FALLBACK_RATES)))
        errors = []
        for rate in rates:
            in_channels = self._channels_for(sd.check_input_settings, in_info, "max_input_channels", rate)
            out_channels = self._channels_for(sd.check_output_settings, out_info, "max_output_channels", rate)
            if in_channels and out_channels:
                return rate, in_channels, out_channels
            errors.append(str(rate))
        raise AudioDeviceError(
            f"{in_info['name']!r} (mic) and {out_info['name']!r} (speaker) accept no common sample "
            f"rate among {', '.join(errors)} Hz in float32; pick other devices in Settings > Audio"
        )

    def _channels_for(self, check: Callable, info: dict, key: str, rate: int) -> int | None:
        for channels in (1, 2):
            if channels > info[key]:  # mono or stereo: the callback downmixes at most two channels
                break
            try:
                check(device=info["index"], channels=channels, dtype="float32", samplerate=rate)
                return channels
            except (self._sd.PortAudioError, ValueError):
                continue
        return None

    def _prepare_buffers(self, rate: int, in_channels: int, out_channels: int) -> None:
        """Preallocate everything the callback touches; rings survive a restart at the same rate."""
        self._blocksize = max(1, round(rate * self.block_ms / 1000))
        self._slow_s = self._blocksize / rate / 4
        self._in_channels, self._out_channels = in_channels, out_channels
        max_frames = 4 * self._blocksize  # PortAudio honours blocksize; headroom for odd backends
        self._max_frames = max_frames
        self._play_scratch = np.zeros(max_frames, dtype=np.float32)
        self._mic_scratch = np.zeros(max_frames, dtype=np.float32)
        self._pair_scratch = np.zeros((max_frames, 2), dtype=np.float32)  # (n, [mic, played])
        if rate == self.device_rate and self._capture is not None:
            return
        if self._capture is not None:
            log.warning("device rate changed %s -> %s Hz: queued audio dropped", self.device_rate, rate)
            self._mic_dropped_before += self._capture.dropped
            self._playback_dropped_before += self._playback.dropped
        self.device_rate = rate
        ring = max(round(rate * self.ring_seconds), 2 * max_frames)
        self._resampler_held = 0.0
        self._capture = FloatRing(ring, channels=2)  # mic + played reference, written together
        self._playback = FloatRing(ring)
        self._flush_until = self._flushed_until = 0
        model_ring = max(round(self.model_rate * self.ring_seconds), 2 * max_frames)
        self._pending = FloatRing(model_ring, channels=2)  # worker-only: resampled, not yet read
        self._pull = np.zeros((max(max_frames, rate // 10), 2), dtype=np.float32)
        self._in_resampler = self._out_resampler = None
        if rate != self.model_rate:
            self._in_resampler = soxr.ResampleStream(rate, self.model_rate, 2, dtype="float32",
                                                     quality=RESAMPLE_QUALITY)
            self._out_resampler = soxr.ResampleStream(self.model_rate, rate, 1, dtype="float32",
                                                      quality=RESAMPLE_QUALITY)

    # -- the callback (PortAudio thread) ------------------------------------------------------------
    def _callback(
        self, indata: np.ndarray, outdata: np.ndarray, frames: int, time_info: Any, status: Any
    ) -> None:
        started = time.perf_counter()
        try:
            if self._want_realtime:  # once per stream thread: a syscall, no allocation after
                self._want_realtime = False
                self._realtime = _raise_thread_priority()
            if status:
                self._xruns += 1
                flags = self._flags
                for name in flags:
                    if getattr(status, name):
                        flags[name] += 1
            if frames > self._max_frames:
                raise AudioDeviceError(
                    f"device delivered {frames} frames, more than the {self._max_frames} prepared"
                )
            # Mic: mono view (or mean of channels) without allocating.
            if self._in_channels == 1:
                mic = indata[:, 0]
            else:  # average the channels by hand: np.mean over axis 1 allocates an 8 KB buffer
                mic = self._mic_scratch[:frames]
                np.add(indata[:, 0], indata[:, 1], out=mic)
                mic *= 0.5
            # Speaker: whatever model audio is queued, silence for the rest.
            playback = self._playback
            if self._flush_until > self._flushed_until:
                flush = self._flush_until
                playback.discard_until(flush)
                self._flushed_until = flush
            play = self._play_scratch[:frames]
            got = playback.read_into(play)
            if got < frames:
                play[got:] = 0.0
                if self._playback_started:
                    self._underruns += 1
            outdata[:] = play[:, None]
            # Mic and exactly what was played, side by side: the echo canceller's reference.
            pair = self._pair_scratch[:frames]
            pair[:, 0] = mic
            pair[:, 1] = play
            self._capture.write(pair)
            self._device_captured += frames
            self._device_played += got
            self._mic_level = math.sqrt(float(np.dot(mic, mic)) / frames) if frames else 0.0
            self._output_level = math.sqrt(float(np.dot(play, play)) / frames) if frames else 0.0
        except Exception as error:  # reported by _finished, from outside the audio path
            outdata.fill(0.0)
            self._callback_error = f"{type(error).__name__}: {error}"
            raise self._sd.CallbackAbort from error
        finally:
            slot = self._callbacks % STATS_WINDOW
            elapsed = time.perf_counter() - started
            self._durations[slot] = elapsed
            self._starts[slot] = started
            if elapsed > self._worst_s:
                self._worst_s = elapsed
            if elapsed > self._slow_s:
                self._slow_callbacks += 1
            self._callbacks += 1

    def _finished(self) -> None:
        """PortAudio's finished_callback: expected after stop(), a device failure otherwise."""
        if self._stopping:
            return
        self._running = False
        reason = self._callback_error or (
            "the device stopped delivering audio (unplugged or taken by another app?)"
        )
        message = f"audio stream on {self.device_name} stopped unexpectedly: {reason}"
        log.error("%s", message)
        if self.on_error is not None:
            self.on_error(message)

    # -- worker side: mic -------------------------------------------------------------------------
    def _pull_capture(self) -> None:
        """Move everything the callback captured into the model-rate pending ring."""
        if self._capture is None:
            return
        while True:
            got = self._capture.read_into(self._pull)
            if got == 0:
                return
            block = self._pull[:got]
            if self._in_resampler is not None:
                block = self._in_resampler.resample_chunk(block)
            self._pending.write(block)

    def read_mic_frame(self, n: int) -> np.ndarray | None:
        """The next `n` mic samples at the model rate, or None until that many were captured.

        The played reference of the same samples is kept for `played_reference(n)`.
        """
        self._pull_capture()
        if self._capture is None or self._pending.available() < n:
            return None
        pair = self._pending.read(n)  # (n, [mic, played])
        if pair is None:
            return None
        self._last_reference = np.ascontiguousarray(pair[:, 1])
        return np.ascontiguousarray(pair[:, 0])

    def played_reference(self, n: int) -> np.ndarray:
        """What the speaker played while the last mic frame was captured (the AEC's far end)."""
        reference = self._last_reference
        if reference is None:
            return np.zeros(n, dtype=np.float32)
        assert len(reference) == n, f"ask for the reference of the frame just read ({len(reference)} samples)"
        return reference

    # -- worker side: speaker -----------------------------------------------------------------------
    def write_playback(self, samples: np.ndarray) -> None:
        """Queue model-rate audio for the speaker."""
        assert samples.ndim == 1, "write mono model audio: a 1-D array of samples"
        assert self._playback is not None, "start() the stream before writing playback"
        samples = np.asarray(samples, dtype=np.float32)
        if self._out_resampler is not None:
            self._resampler_held += len(samples)
            samples = self._out_resampler.resample_chunk(samples)
            self._resampler_held -= len(samples) * self.model_rate / self.device_rate
        self._playback.write(samples)
        self._playback_started = True

    def clear_playback(self) -> None:
        """Drop the model audio not played yet (the user interrupted). Audio written after stays."""
        if self._playback is None:
            return
        if self._out_resampler is not None:
            self._out_resampler.clear()
            self._resampler_held = 0.0
        self._flush_until = self._playback.written

    # -- clocks, levels, stats (any thread) --------------------------------------------------------
    def _to_model(self, device_samples: int) -> int:
        rate = self.device_rate or self.model_rate
        return device_samples * self.model_rate // rate

    @property
    def played_samples(self) -> int:
        """Model-rate samples of model audio handed to the device so far (underrun silence excluded)."""
        return self._to_model(self._device_played)

    @property
    def captured_samples(self) -> int:
        """Model-rate samples of mic audio the device delivered so far."""
        return self._to_model(self._device_captured)

    @property
    def mic_backlog_samples(self) -> int:
        """Model-rate mic samples captured but not read yet."""
        if self._capture is None:
            return 0
        return self._to_model(self._capture.available()) + self._pending.available()

    @property
    def playback_queued_samples(self) -> int:
        """Model-rate samples written but not played yet (in the ring or inside the resampler).

        played_samples + playback_queued_samples is where the next written sample will be heard.
        """
        if self._playback is None:
            return 0
        return self._to_model(self._playback.available()) + max(0, round(self._resampler_held))

    @property
    def mic_level(self) -> float:
        """RMS of the latest mic block (linear, 1.0 = full scale)."""
        return self._mic_level

    @property
    def output_level(self) -> float:
        """RMS of the latest block sent to the speaker."""
        return self._output_level

    def stats(self) -> AudioStats:
        count = min(self._callbacks, STATS_WINDOW)
        durations = self._durations[:count] * 1000
        starts = np.sort(self._starts[:count])
        gaps = np.diff(starts) * 1000 if count > 1 else np.zeros(1)
        capture, playback = self._capture, self._playback
        return AudioStats(
            callbacks=self._callbacks, underruns=self._underruns, xruns=self._xruns,
            input_overflows=self._flags["input_overflow"], input_underflows=self._flags["input_underflow"],
            output_underflows=self._flags["output_underflow"],
            output_overflows=self._flags["output_overflow"],
            mic_dropped_samples=self._mic_dropped_before + (capture.dropped if capture else 0),
            playback_dropped_samples=self._playback_dropped_before + (playback.dropped if playback else 0),
            block_ms=self.block_ms,
            worst_callback_ms=1000 * self._worst_s,
            slow_callbacks=self._slow_callbacks,
            p50_callback_ms=float(np.percentile(durations, 50)) if count else 0.0,
            p99_callback_ms=float(np.percentile(durations, 99)) if count else 0.0,
            max_callback_gap_ms=float(gaps.max()) if count > 1 else 0.0,
            realtime=self._realtime,
        )
