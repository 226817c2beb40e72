"""The trained `small` codec in assets/codecs/small: it is what the `small` preset and `michi codec`
use, it streams exactly as it decodes offline, it carries its evaluation, and it reconstructs speech
it never saw (espeak-ng, a synthesizer its corpus used only in part) far better than an untrained one."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

from michi_core.audio import load_audio
from michi_core.model.codec import Codec
from michi_core.model.config import small
from michi_core.model.model import DEFAULT_CHECKPOINT, load_model, shipped_codec
from training.losses import mel_loss

SHIPPED = shipped_codec("small")
pytestmark = pytest.mark.skipif(SHIPPED is None, reason="no trained codec in assets/codecs/small")


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("speech for this test comes from espeak-ng (`make test` installs it)")
    wav = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav),
                    "Please remind me to water the plants on Thursday morning."], check=True)
    wave = load_audio(wav, 24_000)
    return wave[: len(wave) // 1920 * 1920]


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec.from_pretrained(SHIPPED)


def test_it_is_the_small_presets_codec_with_its_report(codec):
    assert codec.config == small().codec
    report = json.loads((SHIPPED / "eval.json").read_text())
    assert report["evaluation"] == "codec" and report["utterances"] >= 10
    assert report["metrics"]["wer"]["resynthesized"] is not None and report["metrics"]["real"]["clips"] >= 1
    training = json.loads((SHIPPED / "TRAINING.json").read_text())
    assert training["stage"] == "codec" and training["steps"] >= 1000
    assert "WER of the resynthesized audio" in (SHIPPED / "EVAL.md").read_text()
    assert sum(p.stat().st_size for p in SHIPPED.iterdir()) < 30e6  # small enough to commit


def test_the_small_preset_loads_it(codec, one_torch_thread):
    model = load_model(preset_name="small", random_backbone=True)
    for key, value in codec.state_dict().items():
        assert torch.equal(model.codec.state_dict()[key], value), key


def test_it_reconstructs_unseen_speech_far_better_than_an_untrained_codec(codec, speech, one_torch_thread):
    x = torch.from_numpy(speech)[None]
    torch.manual_seed(0)
    untrained = Codec(codec.config).eval()
    with torch.inference_mode():
        trained_distance = float(mel_loss(codec.decode(codec.encode(x).mean), x, 24_000))
        untrained_distance = float(mel_loss(untrained.decode(untrained.encode(x).mean), x, 24_000))
    assert trained_distance < 0.5 * untrained_distance, (trained_distance, untrained_distance)


def test_it_streams_exactly_like_it_decodes_offline(codec, speech, one_torch_thread):
    fs = codec.config.frame_size
    wave = torch.from_numpy(speech[: 12 * fs])[None]
    with torch.inference_mode():
        offline = codec.decode(codec.encode(wave).mean)
        codec.start_streaming(1)
        try:
            streamed = torch.cat([codec.decode(codec.encode(wave[:, i * fs:(i + 1) * fs]).mean)
                                  for i in range(12)], 1)
        finally:
            codec.stop_streaming()
    assert (streamed - offline).abs().max() <= 1e-4


@pytest.mark.skipif((DEFAULT_CHECKPOINT / "config.json").is_file(),
                    reason="a full checkpoint is shipped: michi codec uses the codec inside it")
def test_michi_codec_uses_it_by_default(speech, tmp_path, one_torch_thread, capsys):
    from app.cli import main

    sf.write(tmp_path / "in.wav", speech, 24_000)
    assert main(["codec", "--input", str(tmp_path / "in.wav"), "--output", str(tmp_path / "out.wav")]) == 0
    assert str(SHIPPED) in capsys.readouterr().out
    out, rate = sf.read(str(tmp_path / "out.wav"), dtype="float32")
    assert rate == 24_000 and len(out) == len(speech)
    assert float(mel_loss(torch.from_numpy(out)[None], torch.from_numpy(speech)[None], 24_000)) < 1.5
