"""`michi voices add/list/remove` on the shared database, and `michi chat --voice` with a stored voice."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from michi_core.audio import AudioFileError, load_audio
from michi_core.model.config import tiny
from michi_core.model.model import MichiModel
from michi_core.session.chat import run_chat
from michi_core.stores.voices import STORE_RATE, VoiceStore
from michi_core.stores.voices_cli import main

RATE = STORE_RATE


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py: tiny-model ops


@pytest.fixture(scope="module")
def speech_file(tmp_path_factory):
    """A 44.1 kHz stereo WAV of ~7 s of read speech over a little room noise."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("real speech for these tests comes from espeak-ng: "
                    "apt-get install espeak-ng (`make test` does)")
    directory = tmp_path_factory.mktemp("voice")
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(directory / "raw.wav"),
                    "Which way to the old harbour, where the little fishing boats unload their "
                    "shrimp, squid and silvery sardines every morning at dawn?"],
                   check=True)
    voice = load_audio(directory / "raw.wav", 44_100)
    voice = voice + np.random.default_rng(0).normal(0, 10 ** (-65 / 20), len(voice)).astype(np.float32)
    path = directory / "harbour.wav"
    sf.write(path, np.stack([voice, voice], axis=1), 44_100)
    return path


def test_add_list_remove(speech_file, capsys):
    assert main(["voices", "list"]) == 0
    assert "no voices yet" in capsys.readouterr().out

    assert main(["voices", "add", str(speech_file), "--name", "Harbour", "--transcript", "Which way?"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("added #1 'Harbour':") and "good take" in out
    assert "tip:" not in out, "a transcript was given"

    assert main(["voices", "list"]) == 0
    listing = capsys.readouterr().out
    assert "Harbour" in listing and "“Which way?”" in listing

    assert main(["voices", "add", str(speech_file), "--name", "harbour"]) == 1
    assert "a voice named 'harbour' exists already (#1)" in capsys.readouterr().err

    assert main(["voices", "remove", "1", "7"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "removed #1\n" and "no voice #7" in captured.err
    with VoiceStore() as store:
        assert store.voices() == []


def test_a_bad_recording_is_refused_unless_forced(tmp_path, capsys):
    hum = tmp_path / "hum.wav"
    sf.write(hum, np.random.default_rng(1).normal(0, 0.05, 8 * RATE), RATE)
    assert main(["voices", "add", str(hum), "--name", "Hum"]) == 1
    err = capsys.readouterr().err
    assert "is not a good voice sample" in err and "- no speech heard" in err and "--force" in err
    assert main(["voices", "add", str(hum), "--name", "Hum", "--force"]) == 0
    assert "tip: a transcript" in capsys.readouterr().out

    broken = tmp_path / "broken.flac"
    broken.write_bytes(b"fLaC but not really")
    assert main(["voices", "add", str(broken), "--name", "Broken"]) == 1
    assert "broken.flac: not a readable audio file" in capsys.readouterr().err


def test_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "michi_core.stores.voices_cli", "voices", "list"],
                            capture_output=True, text=True, check=True, timeout=120)
    assert "no voices yet" in result.stdout


def test_chat_voice_takes_a_stored_voice_by_name_or_id(speech_file, tmp_path):
    assert main(["voices", "add", str(speech_file), "--name", "Harbour"]) == 0
    torch.manual_seed(0)
    model = MichiModel(tiny()).eval()
    user = tmp_path / "user.wav"
    sf.write(user, np.zeros(RATE // 2, np.float32), RATE)

    def chat(voice, output):
        return run_chat(model, str(user), str(tmp_path / output), say="Hi", voice_path=voice, seed=1)

    assert chat("harbour", "by_name.wav")["output_frames"] > 0
    chat("1", "by_id.wav")
    np.testing.assert_array_equal(sf.read(tmp_path / "by_name.wav")[0], sf.read(tmp_path / "by_id.wav")[0])
    with VoiceStore() as store:
        encodings = store.db.execute("SELECT * FROM voice_latents").fetchall()
    assert len(encodings) == 1, "encoded once, then cached"
    with pytest.raises(AudioFileError, match="Nobody: neither an audio file nor a stored voice"):
        chat("Nobody", "nobody.wav")
