"""The voice store on a real SQLite file, imports of odd files, the codec-signature rule, and the
engine speaking in a stored voice (tiny preset, real codec)."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from michi_core.audio import AudioFileError, load_audio
from michi_core.model.config import tiny
from michi_core.model.model import MichiModel
from michi_core.paths import database_path
from michi_core.session.engine import DuplexSession, SamplingSettings
from michi_core.stores.voices import (
    STORE_RATE,
    VoiceError,
    VoiceStore,
    load_voice_file,
    model_signature,
    resolve_voice,
    speak,
    voice_from_audio,
)

RATE = STORE_RATE
TRANSCRIPT = "Hello there, nice day."


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    """~7 s of read speech over a microphone's room noise (short: the tiny model's window is 256)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("real speech for these tests comes from espeak-ng: "
                    "apt-get install espeak-ng (`make test` does)")
    wav = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav),
                    "She usually keeps her violin in a velvet case, away from the heat of the kitchen stove, "
                    "and plays it on Sundays."], check=True)
    voice = load_audio(wav, RATE)
    take = np.concatenate([np.zeros(RATE // 2, np.float32), voice])
    return take + np.random.default_rng(0).normal(0, 10 ** (-65 / 20), len(take)).astype(np.float32)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py: tiny-model ops


def load_audio_at(wave: np.ndarray, rate: int) -> np.ndarray:
    return soxr.resample(wave, RATE, rate)


@pytest.fixture
def model(voiced_tiny_model) -> MichiModel:
    return voiced_tiny_model


@pytest.fixture
def store():
    with VoiceStore() as store:  # the shared database under this test's MICHI_HOME
        yield store


# -- the store ------------------------------------------------------------------------------------

def test_add_list_find_rename_remove_on_the_shared_database(store, speech):
    voice = store.add("Ada", speech, RATE, transcript=" Please ring the bell. ")
    assert store.path == database_path() and database_path().is_file()
    assert voice.name == "Ada" and voice.transcript == "Please ring the bell." and voice.source == "recorded"
    assert voice.duration_s == pytest.approx(len(speech) / RATE)
    np.testing.assert_allclose(store.audio(voice.id), speech, atol=1e-4)  # 16-bit FLAC: lossless to 1/32767
    assert store.find("ada") == voice and store.find(str(voice.id)) == voice and store.find("Bob") is None

    with pytest.raises(VoiceError, match=r"a voice named 'ADA' exists already \(#1\)"):
        store.add("ADA", speech, RATE)
    with pytest.raises(VoiceError, match="cannot be only digits"):
        store.add("42", speech, RATE)
    with pytest.raises(VoiceError, match="give the voice a name"):
        store.add("   ", speech, RATE)

    other = store.add("Bob", speech[::2], RATE // 2)  # any rate in: kept at 24 kHz
    assert len(store.audio(other.id)) == pytest.approx(len(speech), abs=2)
    assert store.rename(other.id, "  Bob   the builder ").name == "Bob the builder"
    with pytest.raises(VoiceError, match="exists already"):
        store.rename(other.id, "ada")

    assert store.remove(voice.id) is True and store.remove(voice.id) is False
    assert [v.name for v in store.voices()] == ["Bob the builder"]
    assert store.add("Cy", speech, RATE).id == 3, "ids of removed voices are never reused"
    with VoiceStore() as second:  # another connection (the CLI, a worker thread) sees the same rows
        assert [v.name for v in second.voices()] == ["Bob the builder", "Cy"]


# -- imports ------------------------------------------------------------------------------------------

def test_import_stereo_44k_flac(tmp_path, speech):
    stereo = np.stack([speech, 0.5 * speech], axis=1)
    path = tmp_path / "stereo.flac"
    sf.write(path, load_audio_at(stereo, 44_100), 44_100, format="FLAC")
    wave, report = load_voice_file(path)
    assert report.ok, report.problems
    assert wave.ndim == 1 and abs(len(wave) / RATE - len(speech) / RATE) < 1.0


def test_import_8k_mono_ogg(tmp_path, speech):
    path = tmp_path / "phone.ogg"
    sf.write(path, load_audio_at(speech, 8_000), 8_000, format="OGG", subtype="VORBIS")
    wave, report = load_voice_file(path)
    assert report.ok, report.problems
    assert report.metrics["speech_dbfs"] == pytest.approx(-20, abs=1.5), "brought to the standard loudness"


def test_import_of_a_long_file_keeps_at_most_15_s(tmp_path, speech):
    minute = np.concatenate([speech] * 10)[: 60 * RATE]
    path = tmp_path / "long.wav"
    sf.write(path, minute, RATE)
    wave, report = load_voice_file(path)
    assert len(wave) <= 15 * RATE
    assert report.metrics["source_duration_s"] == pytest.approx(60, abs=0.01)
    assert report.ok, report.problems


def test_import_of_a_corrupt_file_says_so(tmp_path):
    path = tmp_path / "broken.wav"
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" * 10)
    with pytest.raises(AudioFileError, match="broken.wav: not a readable audio file"):
        load_voice_file(path)


# -- the model signature rule ----------------------------------------------------------------------------

def stored_latents(voice_id: int) -> tuple[str, np.ndarray]:
    with sqlite3.connect(database_path()) as db:
        signature, frames, dim, blob = db.execute(
            "SELECT model_signature, frames, latent_dim, latents FROM voice_latents WHERE voice_id = ?",
            [voice_id]).fetchone()
    return signature, np.frombuffer(blob, "<f4").reshape(frames, dim)


def test_latents_are_cached_per_codec_and_reencoded_when_the_codec_changes(store, speech, model, tmp_path):
    voice = store.add("Ada", speech, RATE, transcript=TRANSCRIPT)
    first = store.prompt_for(voice.id, model)
    signature, latents = stored_latents(voice.id)
    assert signature == model_signature(model)
    assert first.transcript == TRANSCRIPT and first.latents.shape == (-(-len(speech) // 1920), 8)
    np.testing.assert_array_equal(latents, first.latents.numpy())
    expected = voice_from_audio(model, store.audio(voice.id), TRANSCRIPT).latents
    torch.testing.assert_close(first.latents, expected)

    # The cache is used while the codec is the same one: mark the stored latents to see them come back.
    with sqlite3.connect(database_path()) as db:
        db.execute("UPDATE voice_latents SET latents = ? WHERE voice_id = ?",
                   [np.full_like(latents, 7.0).tobytes(), voice.id])
    assert bool((store.prompt_for(voice.id, model).latents == 7.0).all())
    model.save_pretrained(tmp_path / "same")
    reloaded = MichiModel.from_pretrained(tmp_path / "same")
    assert model_signature(reloaded) == signature, "the signature is the weights', not the object's"
    assert bool((store.prompt_for(voice.id, reloaded).latents == 7.0).all())

    # New codec weights (a retrained codec): never the old latents, re-encoded from the audio and stored.
    with torch.no_grad():  # any encoder weight: the codec's internals are its own business
        next(p for p in model.codec.encoder.parameters() if p.ndim > 1).mul_(1.5)
    again = store.prompt_for(voice.id, model)
    new_signature, new_latents = stored_latents(voice.id)
    assert new_signature == model_signature(model) != signature
    assert not bool((again.latents == 7.0).any())
    torch.testing.assert_close(again.latents, voice_from_audio(model, store.audio(voice.id)).latents)
    np.testing.assert_array_equal(new_latents, again.latents.numpy())
    assert model_signature(reloaded) == signature, "the untouched model keeps its own signature"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_model_on_cuda_gets_the_same_prompt(store, speech, model):
    voice = store.add("Ada", speech, RATE, transcript=TRANSCRIPT)
    on_cpu = store.prompt_for(voice.id, model).latents
    store.db.execute("DELETE FROM voice_latents")
    on_cuda = store.prompt_for(voice.id, model.to("cuda")).latents
    assert on_cuda.device.type == "cpu", "stored and returned on the CPU; set_voice moves it"
    torch.testing.assert_close(on_cuda, on_cpu, atol=1e-4, rtol=1e-4)


def test_a_codec_config_change_changes_the_signature(model):
    other_config = tiny()
    other_config.codec.latent_dim = 16
    torch.manual_seed(0)
    assert model_signature(MichiModel(other_config)) != model_signature(model)


# -- the engine speaking in a stored voice ---------------------------------------------------------------

def run_session(model: MichiModel, voice=None, frames: int = 12) -> np.ndarray:
    session = DuplexSession(model, SamplingSettings(seed=3))
    if voice is not None:
        session.set_voice(voice)
    session.say("Hi there.")
    silence = np.zeros(1920, np.float32)
    return np.concatenate([session.step(silence).audio for _ in range(frames)])


def test_set_voice_with_a_stored_prompt_changes_what_the_model_says(store, speech, model):
    ada = store.add("Ada", speech, RATE, transcript=TRANSCRIPT)
    plain = run_session(model)
    np.testing.assert_array_equal(plain, run_session(model), "same seed, same output: the test is fair")
    stored = run_session(model, store.prompt_for(ada.id, model))
    # An untrained decoder turns every latent into nearly the same near-silence, so the difference
    # is small; repeated runs are bit-identical, so any difference at all comes from the voice.
    assert np.abs(stored - plain).max() > 1e-6, "a voice prompt must change the model's audio"
    direct = run_session(model, voice_from_audio(model, store.audio(ada.id), TRANSCRIPT))
    np.testing.assert_array_equal(stored, direct, "the stored prompt is exactly its recording's")


def test_speak_and_chat_voice_resolution(store, speech, model, tmp_path):
    ada = store.add("Ada", speech, RATE, transcript=TRANSCRIPT)
    audio = speak(model, "Hi.", store.prompt_for(ada.id, model), SamplingSettings(seed=0), max_seconds=4)
    assert audio.dtype == np.float32 and np.isfinite(audio).all()
    assert 1920 * 13 <= len(audio) <= 4 * RATE, "the text, then a second to settle, within the limit"

    by_name, by_id = resolve_voice(model, "ada"), resolve_voice(model, str(ada.id))
    torch.testing.assert_close(by_name.latents, by_id.latents)
    wav = tmp_path / "voice.wav"
    sf.write(wav, speech, RATE)
    from_file = resolve_voice(model, str(wav))
    assert from_file.transcript == "" and from_file.latents.shape == by_name.latents.shape
    with pytest.raises(AudioFileError, match="neither an audio file nor a stored voice"):
        resolve_voice(model, "Zed")
