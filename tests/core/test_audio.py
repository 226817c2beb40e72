"""michi_core.audio, the one home of audio helpers: files in and out, resampling, and the one
16-bit scale every int16 conversion in Michi goes through."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from michi_core.audio import (
    AudioFileError,
    float_to_int16,
    int16_to_float,
    load_audio,
    resample,
    save_audio,
)


def test_int16_round_trip_is_exact_and_full_scale_clips():
    every = np.arange(-32768, 32768, dtype=np.int16)
    assert np.array_equal(float_to_int16(int16_to_float(every)), every), "int16 -> float -> int16 is lossless"
    assert int16_to_float(every).min() == -1.0 and int16_to_float(every).max() < 1.0
    edges = float_to_int16(np.array([-2.0, -1.0, 0.5 / 32768 * 0.9, 1.0, 3.0], np.float32))
    assert edges.tolist() == [-32768, -32768, 0, 32767, 32767], "rounded, and clipped at full scale"


def test_int16_conversions_fill_preallocated_buffers():
    samples = np.linspace(-0.5, 0.5, 240, dtype=np.float32)
    pcm = np.zeros(240, np.int16)
    assert float_to_int16(samples, out=pcm) is pcm
    back = np.zeros(240, np.float32)
    assert int16_to_float(pcm, out=back) is back
    np.testing.assert_allclose(back, samples, atol=0.5 / 32768)


def test_a_file_is_read_mono_at_the_rate_asked(tmp_path):
    t = np.arange(44_100) / 44_100
    tone = 0.5 * np.sin(2 * np.pi * 1000 * t)
    sf.write(tmp_path / "stereo.flac", np.stack([tone, tone], axis=1), 44_100)
    wave = load_audio(tmp_path / "stereo.flac", 24_000)
    assert wave.dtype == np.float32 and wave.shape == (24_000,)
    spectrum = np.abs(np.fft.rfft(wave[2000:22000]))
    assert np.fft.rfftfreq(20_000, 1 / 24_000)[spectrum.argmax()] == pytest.approx(1000, abs=2)


def test_save_writes_atomically_in_the_format_the_suffix_names(tmp_path):
    wave = np.random.default_rng(0).uniform(-0.5, 0.5, 2400).astype(np.float32)
    for name in ("take.wav", "take.flac"):
        save_audio(tmp_path / "out" / name, wave, 24_000)
        assert sf.info(str(tmp_path / "out" / name)).subtype == "PCM_16"
        np.testing.assert_allclose(load_audio(tmp_path / "out" / name, 24_000), wave, atol=1 / 32768)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["take.flac", "take.wav"], "no partial file left behind"
    with pytest.raises(AudioFileError, match="cannot write '.xyz' audio"):
        save_audio(tmp_path / "take.xyz", wave, 24_000)


def test_unusable_files_say_what_is_wrong(tmp_path):
    with pytest.raises(AudioFileError, match="no such audio file"):
        load_audio(tmp_path / "missing.wav", 24_000)
    (tmp_path / "fake.wav").write_bytes(b"RIFF, but not really")
    with pytest.raises(AudioFileError, match="not a readable audio file"):
        load_audio(tmp_path / "fake.wav", 24_000)


def test_resample_keeps_duration_and_pitch():
    t = np.arange(16_000) / 16_000
    up = resample(np.sin(2 * np.pi * 440 * t).astype(np.float32), 16_000, 24_000)
    assert up.shape == (24_000,) and up.dtype == np.float32
    crossings = np.count_nonzero(np.diff(np.signbit(up[1000:23000])))
    assert crossings / 2 / (22_000 / 24_000) == pytest.approx(440, rel=0.01)
