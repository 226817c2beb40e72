"""Acoustic echo cancellation: on speakers, the model must not hear itself.

`EchoCanceller` runs WebRTC's AEC3 (the canceller in Chrome) through the Audio Processing
Module that the `livekit` package ships (`livekit.rtc.AudioProcessingModule`). Per 80 ms frame
it feeds the far end (exactly the samples the speaker played, from `AudioIO.played_reference`)
and the mic in 10 ms slices, far end first, and returns the cleaned mic.

Why livekit (pinned `livekit==1.2.1`), among what installs on Python 3.11 x86_64 here:
- It is maintained by a company whose product depends on it (releases every few weeks), under
  Apache-2.0, with prebuilt wheels for Linux x86_64/aarch64, macOS and Windows: the packaged
  app needs no compiler on any of them.
- Measured on a simulated room (tests/app/test_echo.py: 45 ms delay, 60 ms reverberant tail,
  noise): 22 dB of echo removed (19 dB already in the first second); the user alone passes at
  -0.5 dB. During double talk it kept the user's voice better than `pywebrtc-audio==0.2.0`
  (the same AEC3 with a nicer float API, but a single release from a small project): on the
  same room, correlation with the clean user 0.75 vs 0.59.
- Cost: 1.0-1.4 ms per 80 ms frame on this 2-core CPU (16 FFI calls per frame). The price
  is a 28 MB native library (all of LiveKit's WebRTC) and a protobuf dependency, small next
  to torch; it is imported only when a canceller is built, so headphone users never load it.
- Rejected: `speexdsp` (2018, sdist needing libspeexdsp-dev; Speex's canceller is also weaker
  on nonlinear paths), `webrtc-audio-processing` (2019, SWIG sdist), `aec-audio-processing` and
  `webrtc-apm` (no wheel for this platform).

Rates: the APM API takes any rate from 8 to 384 kHz and resamples internally to its 16/32/48
kHz processing rate, so Michi's 24 kHz goes in directly (10 ms = 240 samples) instead of
through a second resampler of ours; tests/app/test_echo.py holds it to the stated ERLE at
24 kHz. The APM's internal rate conversion delays the cleaned mic by ~9 ms (measured: 223
samples), which the VAD and the model do not mind.

The APM speaks int16 (`michi_core.audio`'s one 16-bit scale); the int16 buffers and the frames
handed to the FFI are built once and converted into in place.
"""

from __future__ import annotations

import numpy as np

from michi_core.audio import float_to_int16, int16_to_float
from michi_core.model.config import CodecConfig


class EchoCanceller:
    """WebRTC AEC3 on 24 kHz mono frames; satisfies `app.audio_port.EchoCanceller`.

    Not thread-safe: one worker thread calls `process` once per frame, in order.
    """

    def __init__(
        self,
        *,
        sample_rate: int = CodecConfig.sample_rate,
        stream_delay_ms: int | None = None,  # speaker->mic delay hint, e.g. from AudioIO.stream_latency_s
        noise_suppression: bool = False,  # the model hears noisy mics in training; NS can eat quiet speech
    ) -> None:
        # Imported here: loading LiveKit's native library starts its runtime (~0.4 s, a few
        # threads), which only speaker users need.
        from livekit import rtc

        assert sample_rate % 100 == 0, f"the APM works on 10 ms slices: {sample_rate} Hz has no whole 10 ms"
        self.sample_rate = sample_rate
        self.slice = sample_rate // 100  # samples per 10 ms
        self.stream_delay_ms = stream_delay_ms
        self._rtc = rtc
        self._noise_suppression = noise_suppression
        self._far_bytes = bytearray(2 * self.slice)
        self._near_bytes = bytearray(2 * self.slice)
        self._far = np.frombuffer(self._far_bytes, dtype=np.int16)  # views the FFI reads and writes in place
        self._near = np.frombuffer(self._near_bytes, dtype=np.int16)
        self._far_frame = rtc.AudioFrame(self._far_bytes, sample_rate, 1, self.slice)
        self._near_frame = rtc.AudioFrame(self._near_bytes, sample_rate, 1, self.slice)
        self.reset()

    def reset(self) -> None:
        """Forget the learned echo path (a new call, another device)."""
        self._apm = self._rtc.AudioProcessingModule(
            echo_cancellation=True, high_pass_filter=True, noise_suppression=self._noise_suppression
        )

    def process(self, mic_frame: np.ndarray, played_reference: np.ndarray) -> np.ndarray:
        """The mic frame with the echo of `played_reference` removed (float32, same length)."""
        n = len(mic_frame)
        assert len(played_reference) == n, (
            f"the reference must be the {n} samples played while this mic frame was captured, "
            f"got {len(played_reference)}"
        )
        assert n % self.slice == 0, f"frames must be whole 10 ms slices ({self.slice} samples), got {n}"
        cleaned = np.empty(n, dtype=np.float32)
        for start in range(0, n, self.slice):
            stop = start + self.slice
            float_to_int16(played_reference[start:stop], out=self._far)
            self._apm.process_reverse_stream(self._far_frame)
            float_to_int16(mic_frame[start:stop], out=self._near)
            if self.stream_delay_ms is not None:
                self._apm.set_stream_delay_ms(self.stream_delay_ms)
            self._apm.process_stream(self._near_frame)
            int16_to_float(self._near, out=cleaned[start:stop])
        return cleaned


class HeadphonesBypass:
    """No echo to cancel (headphones): the mic passes through untouched."""

    def process(self, mic_frame: np.ndarray, played_reference: np.ndarray) -> np.ndarray:
        return mic_frame

    def reset(self) -> None:
        """Nothing learned, nothing to forget."""
