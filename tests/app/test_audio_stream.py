"""AudioIO on a fake sounddevice: clocks, reference, underruns, flush, devices and failures.

The fake drives the real callback from a thread (tests/app/fake_sounddevice.py); nothing in
AudioIO is patched.
"""

from __future__ import annotations

import logging
import threading
import time
import tracemalloc

import numpy as np
import pytest
from fake_sounddevice import FakeSoundDevice, counter, tone

from app.audio.file_device import CallbackFlags, VirtualDeviceSpec
from app.audio.stream import AudioDeviceError, AudioIO, list_devices, resolve_device
from michi_core.model.config import CodecConfig

RATE = CodecConfig.sample_rate
FRAME = CodecConfig.frame_size


def wait_for(condition, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.002)


def read_frames(audio: AudioIO, count: int, timeout: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """`count` mic frames and the played reference of each, as the worker reads them."""
    mic, reference = [], []
    deadline = time.monotonic() + timeout
    while len(mic) < count:
        assert time.monotonic() < deadline, f"only {len(mic)} of {count} mic frames arrived in {timeout} s"
        frame = audio.read_mic_frame(FRAME)
        if frame is None:
            time.sleep(0.002)
            continue
        mic.append(frame)
        reference.append(audio.played_reference(FRAME).copy())
    return np.concatenate(mic), np.concatenate(reference)


def sine(frequency: float, seconds: float, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


@pytest.fixture
def started():
    """Start AudioIO objects and always stop them, even when an assert fails mid-test."""
    opened: list[AudioIO] = []

    def start(audio: AudioIO) -> AudioIO:
        opened.append(audio)
        audio.start()
        return audio

    yield start
    for audio in opened:
        audio.stop()


def test_the_reference_is_exactly_what_the_speaker_played(started):
    """At the model rate (no resampling) the mic hears the speaker one block later, bit for
    bit, and the reference handed to the echo canceller is those very samples, underrun
    silence included."""
    fake = FakeSoundDevice(speed=8.0, loopback_gain=1.0)
    audio = started(AudioIO(sd=fake))
    played = sine(440, 0.5) + 0.1  # never zero: its first sample marks where playback began
    audio.write_playback(played)
    mic, reference = read_frames(audio, 10)  # 0.8 s: silence until the write, the tone, silence again
    begin = int(np.flatnonzero(reference)[0])
    assert begin % audio._blocksize == 0, "model audio starts at a block boundary"
    assert np.array_equal(reference[begin : begin + len(played)], played), (
        "the reference must be the samples played"
    )
    assert not reference[:begin].any() and not reference[begin + len(played) :].any(), (
        "with no model audio queued, silence is played, and the reference says so"
    )
    block = audio._blocksize
    assert np.array_equal(mic[block:], reference[:-block]), (
        "the mic heard something other than what was played"
    )
    assert audio.played_samples == len(played), "underrun silence must not advance the played clock"


@pytest.mark.parametrize("device_rate", [48_000, 44_100])
def test_audio_is_resampled_at_the_edge_and_keeps_its_pitch(started, device_rate):
    fake = FakeSoundDevice([VirtualDeviceSpec("card", default_samplerate=device_rate)], speed=8.0,
                           loopback_gain=1.0)
    audio = started(AudioIO(sd=fake))
    assert audio.device_rate == device_rate, "the stream must run at the device's native rate"
    noise = 0.2 * np.random.default_rng(0).standard_normal(RATE // 2).astype(np.float32)
    audio.write_playback(np.concatenate([sine(1000, 1.0), noise]))
    mic, reference = read_frames(audio, 20)
    steady = mic[2 * FRAME : 10 * FRAME]
    spectrum = np.abs(np.fft.rfft(steady * np.hanning(len(steady))))
    assert abs(np.argmax(spectrum) * RATE / len(steady) - 1000) < 2, "pitch changed: rate mix-up at the edge"
    level = float(np.sqrt(np.mean(steady**2)))
    assert abs(level - 0.3 / np.sqrt(2)) < 0.01, f"level {level:.3f} after two resamplers, expected 0.212"
    # In the noise, the mic must trail its reference by exactly the one device block of the loopback.
    heard, played = mic[14 * FRAME : 17 * FRAME], reference[13 * FRAME : 17 * FRAME]
    lag = len(played) - len(heard) - int(np.argmax(np.correlate(played, heard, "valid")))
    expected = audio._blocksize * RATE / device_rate
    assert abs(lag - expected) <= 2, f"mic trails the reference by {lag} samples, expected {expected:.0f}"
    assert audio.played_samples + audio.playback_queued_samples == pytest.approx(1.5 * RATE, abs=2), (
        "played + queued must account for every model sample written, including those the "
        "resampler still holds: the transcript places words with it"
    )


def test_underruns_are_counted_only_once_the_model_has_spoken(started):
    fake = FakeSoundDevice(speed=8.0)
    audio = started(AudioIO(sd=fake))
    read_frames(audio, 3)
    assert audio.stats().underruns == 0, "before the first model audio, silence is expected, not an underrun"
    audio.write_playback(sine(300, 0.1))
    wait_for(lambda: audio.played_samples == int(0.1 * RATE), what="the model audio to play")
    wait_for(lambda: audio.stats().underruns >= 5, timeout=2.0,
             what="blocks played after the model audio ran out to count as underruns")


def test_clear_playback_drops_queued_audio_but_not_what_follows(started):
    fake = FakeSoundDevice(speed=4.0)
    audio = started(AudioIO(sd=fake))
    audio.write_playback(sine(300, 2.0))  # Michi is mid-sentence ...
    wait_for(lambda: audio.played_samples > 0, what="playback to begin")
    audio.clear_playback()  # ... and the user interrupts
    marker = np.full(FRAME, 0.5, dtype=np.float32)
    audio.write_playback(marker)  # the model's next frame, written right after the flush
    wait_for(lambda: audio.playback_queued_samples == 0, what="the queue to drain")
    time.sleep(0.05)
    played = fake.played()
    assert audio.played_samples < RATE, (
        f"{audio.played_samples} samples played: the flush did not drop the queue"
    )
    assert np.count_nonzero(played == 0.5) == FRAME, "the frame written after the flush must still be played"


def test_a_late_worker_loses_the_oldest_mic_audio_and_it_is_counted(started):
    fake = FakeSoundDevice(speed=20.0, mic_source=counter())
    audio = started(AudioIO(sd=fake, ring_seconds=0.5))
    wait_for(lambda: audio.captured_samples > 1.5 * RATE, what="1.5 s of capture")  # the worker is stuck
    assert audio.mic_backlog_samples <= 0.5 * RATE + 2 * FRAME, "the backlog must be bounded by the ring"
    frame = audio.read_mic_frame(FRAME)
    stats = audio.stats()
    assert stats.mic_dropped_samples > 0.9 * RATE, (
        f"only {stats.mic_dropped_samples} samples counted as dropped"
    )
    first = round(float(frame[0]) * 1e6)
    assert first > RATE, (
        f"got sample #{first}: after an overflow the worker must get recent audio, not the oldest"
    )
    assert np.allclose(np.diff(frame), 1e-6, atol=1e-7), "the frame after an overflow must be contiguous"


def test_status_flags_are_counted_as_xruns(started):
    fake = FakeSoundDevice(speed=8.0)
    audio = started(AudioIO(sd=fake))
    read_frames(audio, 1)
    fake.inject_status(input_overflow=True)
    read_frames(audio, 2)
    fake.inject_status(output_underflow=True)
    read_frames(audio, 2)
    stats = audio.stats()
    assert (stats.xruns, stats.input_overflows, stats.output_underflows) == (2, 1, 1)


def test_callback_timing_is_recorded(started):
    fake = FakeSoundDevice(speed=8.0)
    audio = started(AudioIO(sd=fake))
    read_frames(audio, 5)
    stats = audio.stats()
    assert stats.callbacks >= 20
    assert 0 < stats.p50_callback_ms <= stats.p99_callback_ms <= stats.worst_callback_ms < stats.block_ms
    assert stats.realtime is None, "a virtual device's Python thread must never be made real-time"


class _SlowFlags(CallbackFlags):
    """A status whose check stalls the callback, like a GIL wait or a preemption would."""

    def __bool__(self) -> bool:
        time.sleep(0.010)
        return False


def test_a_callback_slower_than_a_quarter_block_is_counted_and_sets_the_worst():
    audio = AudioIO(sd=FakeSoundDevice(), block_ms=20)
    audio._prepare_buffers(RATE, 1, 1)
    frames = audio._blocksize
    indata, outdata = np.zeros((frames, 1), dtype=np.float32), np.zeros((frames, 1), dtype=np.float32)
    audio._callback(indata, outdata, frames, None, CallbackFlags())
    audio._callback(indata, outdata, frames, None, _SlowFlags())
    stats = audio.stats()
    assert (stats.callbacks, stats.slow_callbacks) == (2, 1), "one of two callbacks took 10 ms of 20"
    assert stats.worst_callback_ms >= 10.0


def test_levels_follow_mic_and_speaker(started):
    fake = FakeSoundDevice(speed=4.0, mic_source=tone(500, amplitude=0.5))
    audio = started(AudioIO(sd=fake))
    audio.write_playback(sine(300, 1.0, amplitude=0.1))
    wait_for(lambda: audio.played_samples > FRAME, what="playback")
    assert audio.mic_level == pytest.approx(0.5 / np.sqrt(2), rel=0.05)
    assert audio.output_level == pytest.approx(0.1 / np.sqrt(2), rel=0.05)


def test_the_callback_allocates_no_array():
    """Called directly with a full ring and a stereo-only device (the downmix path)."""
    stereo_only = VirtualDeviceSpec("stereo", max_input_channels=2, max_output_channels=2, min_channels=2)
    fake = FakeSoundDevice([stereo_only])
    audio = AudioIO(sd=fake, block_ms=80, ring_seconds=4)  # 7.5 KB blocks: a per-block copy stands out
    audio._prepare_buffers(RATE, 2, 2)
    frames = audio._blocksize
    indata = np.full((frames, 2), 0.1, dtype=np.float32)
    outdata = np.zeros((frames, 2), dtype=np.float32)
    audio.write_playback(np.ones(45 * frames, dtype=np.float32))  # enough for every call below
    for _ in range(10):
        audio._callback(indata, outdata, frames, None, CallbackFlags())
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(30):
            audio._callback(indata, outdata, frames, None, CallbackFlags(input_overflow=True))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    block_bytes = frames * 4
    assert peak - before < block_bytes / 2, (
        f"the callback allocated {peak - before} bytes (one block is {block_bytes}): it must only copy"
    )
    assert np.all(outdata == 1.0), "both output channels carry the mono model audio"


# -- devices ----------------------------------------------------------------------------------------
DEVICES = [
    VirtualDeviceSpec("Built-in Microphone", max_input_channels=2, max_output_channels=0),
    VirtualDeviceSpec("Built-in Speakers", max_input_channels=0, max_output_channels=2),
    VirtualDeviceSpec("USB Headset", max_input_channels=1, max_output_channels=2, default_samplerate=48_000),
]


def test_devices_are_listed_by_direction_and_resolved_by_name(caplog):
    fake = FakeSoundDevice(DEVICES)
    inputs, outputs = list_devices(fake)
    assert [d.name for d in inputs] == ["Built-in Microphone", "USB Headset"]
    assert [d.name for d in outputs] == ["Built-in Speakers", "USB Headset"]
    assert resolve_device("USB Headset", "input", fake) == 2
    assert resolve_device("usb head", "output", fake) == 2, "a saved name matches case-insensitively"
    assert resolve_device("Built-in Speakers", "input", fake) is None, "an output-only device is no mic"
    with caplog.at_level(logging.WARNING):
        assert resolve_device("Bluetooth Earbuds", "output", fake) is None
    assert "Bluetooth Earbuds" in caplog.text, (
        "falling back to the default must be logged with the missing name"
    )


def test_a_saved_device_runs_at_its_rate_and_a_missing_one_falls_back(started):
    fake = FakeSoundDevice(DEVICES, speed=8.0)
    audio = started(AudioIO(sd=fake, input_device="USB Headset", output_device="USB Headset"))
    assert audio.device_rate == 48_000 and "USB Headset" in audio.device_name
    audio.stop()
    fallback = started(AudioIO(sd=fake, input_device="Gone Mic", output_device="Gone Speaker"))
    assert "Built-in Microphone" in fallback.device_name and "Built-in Speakers" in fallback.device_name


def test_a_mono_refusing_device_is_opened_in_stereo_and_downmixed(started):
    fake = FakeSoundDevice([VirtualDeviceSpec("pro card", 2, 2, min_channels=2)], speed=8.0,
                           mic_source=tone(700, amplitude=0.4))
    audio = started(AudioIO(sd=fake))
    mic, _ = read_frames(audio, 2)
    assert fake.streams[-1].channels == (2, 2)
    assert np.sqrt(np.mean(mic[FRAME:] ** 2)) == pytest.approx(0.4 / np.sqrt(2), rel=0.02)


def test_a_device_refusing_every_rate_gives_an_actionable_error():
    fake = FakeSoundDevice([VirtualDeviceSpec("odd card", rates=(22_050,), default_samplerate=96_000)])
    with pytest.raises(AudioDeviceError, match="no common sample rate.*Settings"):
        AudioIO(sd=fake).start()


def test_an_open_failure_raises_with_the_device_names_and_leaves_nothing_running():
    fake = FakeSoundDevice(DEVICES, fail_open="Device unavailable [PaErrorCode -9985]")
    audio = AudioIO(sd=fake, input_device="USB Headset", output_device="USB Headset")
    with pytest.raises(AudioDeviceError) as raised:
        audio.start()
    message = str(raised.value)
    assert "USB Headset" in message and "Device unavailable" in message and "Settings" in message
    assert not audio.running


def test_an_unplugged_device_is_reported_and_the_stream_restarts_cleanly(started):
    fake = FakeSoundDevice(speed=8.0, mic_source=tone(440))
    errors: list[str] = []
    reported = threading.Event()

    def on_error(message: str) -> None:
        errors.append(message)
        reported.set()

    audio = started(AudioIO(sd=fake, on_error=on_error))
    read_frames(audio, 2)
    fake.unplug()
    assert reported.wait(5), "an unplugged device must be reported through on_error"
    assert "stopped unexpectedly" in errors[0] and "unplugged" in errors[0], errors[0]
    assert not audio.running
    audio.stop()  # what the worker does: stop, then start again
    audio.start()
    before = audio.captured_samples
    read_frames(audio, 2)
    assert audio.captured_samples > before, "audio must flow again after the restart"
    audio.stop()
    assert len(errors) == 1, f"a requested stop must not be reported as an error: {errors}"
