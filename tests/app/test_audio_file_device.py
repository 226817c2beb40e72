"""FileAudioDevice: the `--self-test` microphone (a WAV file) and speaker (a recording)."""

from __future__ import annotations

import math
import time

import numpy as np
import soundfile

from app.audio.file_device import FileAudioDevice
from app.audio.stream import AudioIO
from michi_core.model.config import CodecConfig

RATE = CodecConfig.sample_rate
FRAME = CodecConfig.frame_size


def test_a_wav_file_is_heard_at_the_model_rate_and_the_reply_is_recorded(tmp_path):
    """A 16 kHz stereo file goes in (resampled, downmixed); what the worker writes comes out."""
    t = np.arange(16_000) / 16_000
    left = 0.4 * np.sin(2 * np.pi * 600 * t)
    soundfile.write(tmp_path / "user.wav", np.stack([left, left], axis=1), 16_000)
    device = FileAudioDevice(tmp_path / "user.wav", speed=20.0)
    audio = AudioIO(sd=device, ring_seconds=10)  # 20x real time: the 10 s ring holds 0.5 s of slack
    reply = (0.2 * np.cos(2 * np.pi * 300 * np.arange(RATE) / RATE) + 0.01).astype(np.float32)  # never 0
    audio.start()
    try:
        audio.write_playback(reply)
        assert device.mic_finished.wait(10), "the whole file should be captured within seconds"
        mic = []
        while (frame := audio.read_mic_frame(FRAME)) is not None and len(mic) < 12:
            mic.append(frame)
        deadline = time.monotonic() + 10
        while audio.played_samples < len(reply):
            assert time.monotonic() < deadline, (
                f"only {audio.played_samples} of {len(reply)} reply samples played"
            )
            time.sleep(0.001)
    finally:
        audio.stop()
    heard = np.concatenate(mic)[: RATE - 500]
    spectrum = np.abs(np.fft.rfft(heard * np.hanning(len(heard))))
    assert abs(np.argmax(spectrum) * RATE / len(heard) - 600) < 2, "the file's tone must arrive at its pitch"
    level = float(np.sqrt(np.mean(heard[1000:] ** 2)))
    assert abs(level - 0.4 / np.sqrt(2)) < 0.005, (
        f"level {level:.3f}: a stereo file is averaged to mono, not summed"
    )
    played = device.played()
    begin = int(np.flatnonzero(played)[0])  # the device may have played silence before the write
    assert np.array_equal(played[begin : begin + len(reply)], reply), (
        "the recording must hold exactly the audio written"
    )
    device.save_played(tmp_path / "reply.wav")
    saved, rate = soundfile.read(tmp_path / "reply.wav", dtype="float32")
    assert rate == RATE and np.array_equal(saved, played)


def test_at_speed_one_the_device_keeps_real_time(tmp_path):
    soundfile.write(tmp_path / "silence.wav", np.zeros(RATE, dtype=np.float32), RATE)
    device = FileAudioDevice(tmp_path / "silence.wav", speed=1.0)
    audio = AudioIO(sd=device)
    audio.start()
    started = time.monotonic()
    time.sleep(0.5)
    captured = audio.captured_samples
    elapsed = time.monotonic() - started
    audio.stop()
    assert abs(captured / RATE - elapsed) < 0.06, (
        f"captured {captured / RATE:.3f} s of audio in {elapsed:.3f} s of wall time: "
        "a real-time device drifts"
    )


def test_as_fast_as_possible_outruns_real_time(tmp_path):
    soundfile.write(tmp_path / "speech.wav", np.zeros(2 * RATE, dtype=np.float32), RATE)
    device = FileAudioDevice(tmp_path / "speech.wav", speed=math.inf)
    audio = AudioIO(sd=device)
    started = time.monotonic()
    audio.start()
    try:
        assert device.mic_finished.wait(5), "2 s of file never finished"
    finally:
        audio.stop()
    assert time.monotonic() - started < 1.0, "speed=inf must not pace at real time"
