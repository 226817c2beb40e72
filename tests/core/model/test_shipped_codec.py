"""The trained `small` codec in assets/codecs/small, with the real pretrained vocoder: it is what the
`small` preset and `michi codec` use, it streams exactly as it decodes offline, it carries its
evaluation, and what it resynthesizes is speech Whisper understands, word for word."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from michi_core.audio import load_audio
from michi_core.model.codec import Codec
from michi_core.model.config import small
from michi_core.model.model import DEFAULT_CHECKPOINT, load_model, shipped_codec

SHIPPED = shipped_codec("small")
pytestmark = [pytest.mark.skipif(SHIPPED is None, reason="no trained codec in assets/codecs/small"),
              pytest.mark.usefixtures("one_torch_thread")]
SENTENCE = "Please remind me to water the plants on Thursday morning."


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """A sentence in piper's natural voice (its text is in no corpus), at 24 kHz."""
    pytest.importorskip("piper", reason="speech for this test comes from piper-tts (the train extra)")
    from michi_core.audio import resample
    from training.data.piper_voice import PiperSynth

    result = PiperSynth(threads=1).synthesize(SENTENCE, noise_scale=0.0, noise_w_scale=0.0)
    return resample(result.audio, result.sample_rate, 24_000)


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec.from_pretrained(SHIPPED)


@pytest.fixture(scope="module")
def whisper():
    pytest.importorskip("faster_whisper", reason="Whisper (the train extra) judges the resynthesis")
    from training.eval.asr import Transcriber, scoring_text

    transcriber = Transcriber("base")
    return lambda audio: scoring_text(transcriber(audio, 24_000)).split()


def test_it_is_the_small_presets_codec_with_its_report(codec):
    assert codec.config == small().codec
    assert codec.config.vocoder == "hifigan-universal"
    report = json.loads((SHIPPED / "eval.json").read_text())
    assert report["evaluation"] == "codec" and report["utterances"] >= 10
    assert report["metrics"]["wer"]["resynthesized"] is not None and report["metrics"]["real"]["clips"] >= 1
    training = json.loads((SHIPPED / "TRAINING.json").read_text())
    assert training["stage"] == "codec" and training["steps"] >= 1000
    assert "WER of the resynthesized audio" in (SHIPPED / "EVAL.md").read_text()
    assert sum(p.stat().st_size for p in SHIPPED.iterdir()) < 30e6  # the autoencoder only: the vocoder is a wheel


def test_the_small_preset_loads_it(codec):
    model = load_model(preset_name="small", random_backbone=True)
    for key, value in codec.state_dict().items():
        assert torch.equal(model.codec.state_dict()[key], value), key


def test_whisper_understands_its_resynthesis_of_a_sentence_it_never_saw(codec, speech, whisper):
    resynthesized, posterior = codec.resynthesize(torch.from_numpy(speech))
    heard = whisper(resynthesized.numpy())
    expected = ["please", "remind", "me", "to", "water", "the", "plants", "on", "thursday", "morning"]
    missed = [w for w in expected if w not in heard]
    assert len(missed) <= 1, f"heard {heard}"
    assert 0.5 < float(posterior.mean.std()) < 2.0  # latents near unit scale: the flow head's targets


def test_whisper_understands_its_resynthesis_of_a_real_human_recording(codec, whisper):
    from training.eval.real_speech import RealSpeechError, real_recordings

    try:
        (recording,) = real_recordings("arctic")
    except RealSpeechError as error:
        pytest.skip(f"the ARCTIC recording could not be fetched: {error}")
    wave = load_audio(recording.path, 24_000)
    heard = whisper(codec.resynthesize(torch.from_numpy(wave))[0].numpy())
    expected = ["he", "turned", "sharply", "and", "faced", "across", "the", "table"]
    assert sum(w in heard for w in expected) >= len(expected) - 1, f"heard {heard}"


def test_it_streams_exactly_like_it_decodes_offline(codec, speech):
    fs = codec.config.frame_size
    wave = torch.from_numpy(speech[: 12 * fs])[None]
    with torch.inference_mode():
        offline = codec.decode(codec.encode(wave).mean)
        with codec.streaming(1):
            streamed = torch.cat([codec.decode(codec.encode(wave[:, i * fs:(i + 1) * fs]).mean)
                                  for i in range(12)], 1)
    assert (streamed - offline).abs().max() <= 1e-4


@pytest.mark.skipif((DEFAULT_CHECKPOINT / "config.json").is_file(),
                    reason="a full checkpoint is shipped: michi codec uses the codec inside it")
def test_michi_codec_uses_it_by_default_and_keeps_the_timing(codec, speech, tmp_path, capsys):
    from app.cli import main

    sf.write(tmp_path / "in.wav", speech, 24_000, subtype="FLOAT")
    assert main(["codec", "--input", str(tmp_path / "in.wav"), "--output", str(tmp_path / "out.wav")]) == 0
    assert "codecs/small" in capsys.readouterr().out
    out, rate = sf.read(str(tmp_path / "out.wav"), dtype="float32")
    assert rate == 24_000 and len(out) == len(speech) // 1920 * 1920 + (1920 if len(speech) % 1920 else 0)
    expected, _ = codec.resynthesize(torch.from_numpy(speech))
    error = out[: len(speech)] - expected.numpy()  # the same, sample for sample, up to 16-bit output
    assert np.sum(error ** 2) < 1e-4 * np.sum(expected.numpy() ** 2)
