"""Real-speech folders for the codec evaluation: transcripts beside the audio, clear errors, and a
download that is checked before anything is written."""

import io
import tarfile

import numpy as np
import pytest
import soundfile as sf

from training.eval.real_speech import ARCTIC_MEMBER, RealSpeechError, fetch_arctic, real_recordings


def test_a_folder_gives_each_recording_with_its_transcript(tmp_path):
    sf.write(tmp_path / "b.wav", np.zeros(1600, np.float32), 16_000)
    sf.write(tmp_path / "a.flac", np.zeros(1600, np.float32), 16_000)
    (tmp_path / "a.txt").write_text("Hello there.\n")
    (tmp_path / "b.txt").write_text("General Kenobi.")
    sf.write(tmp_path / "untranscribed.wav", np.zeros(1600, np.float32), 16_000)
    recordings = real_recordings(tmp_path)
    assert [(r.id, r.text) for r in recordings] == [("a", "Hello there."), ("b", "General Kenobi.")]


def test_a_folder_without_transcribed_audio_is_a_clear_error(tmp_path):
    sf.write(tmp_path / "x.wav", np.zeros(1600, np.float32), 16_000)
    with pytest.raises(RealSpeechError, match="no audio file with a .txt transcript"):
        real_recordings(tmp_path)
    with pytest.raises(RealSpeechError, match="not a folder"):
        real_recordings(tmp_path / "missing")


def test_a_download_that_is_not_the_expected_archive_writes_nothing(tmp_path):
    fake = tmp_path / "fake.tar.gz"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = b"RIFF not really"
        info = tarfile.TarInfo(ARCTIC_MEMBER)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    fake.write_bytes(buffer.getvalue())
    with pytest.raises(RealSpeechError, match="SHA-256"):
        fetch_arctic(tmp_path / "cache", url=fake.as_uri())
    assert not (tmp_path / "cache").exists()
    with pytest.raises(RealSpeechError, match="could not download"):
        fetch_arctic(tmp_path / "cache", url=(tmp_path / "absent.tar.gz").as_uri())
