"""The codec: latent shape and rate, KL, and streaming decode == offline decode."""

import pytest
import torch

from michi_core.model.codec import Codec
from michi_core.model.config import CodecConfig, tiny


def _codec(config: CodecConfig | None = None) -> Codec:
    torch.manual_seed(0)
    return Codec(config or tiny().codec).eval()


def test_one_latent_per_frame_and_frame_size_samples_per_latent():
    codec = _codec()
    c = codec.config
    wave = torch.randn(2, 5 * c.frame_size)
    posterior = codec.encode(wave)
    assert posterior.mean.shape == (2, 5, c.latent_dim)
    assert codec.decode(posterior.mean).shape == (2, 5 * c.frame_size)


def test_kl_is_zero_exactly_at_the_prior_and_positive_elsewhere():
    from michi_core.model.codec import Posterior

    zeros = torch.zeros(1, 3, 4)
    assert Posterior(zeros, zeros).kl().item() == 0.0
    assert Posterior(zeros + 1.0, zeros).kl().item() > 0.4


@torch.no_grad()
def test_decoding_frame_by_frame_equals_decoding_the_whole_clip():
    # The default (small) decoder: every conv of the real architecture is exercised.
    codec = _codec(CodecConfig(decoder_channels=64))
    latents = torch.randn(1, 12, codec.config.latent_dim)
    offline = codec.decode(latents)
    codec.start_streaming(1)
    streamed = torch.cat([codec.decode(latents[:, i:i + 1]) for i in range(latents.shape[1])], dim=1)
    codec.stop_streaming()
    assert streamed.shape == offline.shape
    assert (streamed - offline).abs().max().item() <= 1e-4


@torch.no_grad()
def test_encoding_frame_by_frame_equals_encoding_the_whole_clip():
    codec = _codec()
    fs = codec.config.frame_size
    wave = torch.randn(1, 9 * fs)
    offline = codec.encode(wave).mean
    codec.start_streaming(1)
    streamed = torch.cat([codec.encode(wave[:, i * fs:(i + 1) * fs]).mean for i in range(9)], dim=1)
    assert (streamed - offline).abs().max().item() <= 1e-4


@torch.no_grad()
def test_new_input_never_changes_earlier_output():
    codec = _codec()
    latents = torch.randn(1, 6, codec.config.latent_dim)
    changed = latents.clone()
    changed[:, 4:] = torch.randn(1, 2, codec.config.latent_dim)
    fs = codec.config.frame_size
    a, b = codec.decode(latents), codec.decode(changed)
    assert torch.equal(a[:, : 4 * fs], b[:, : 4 * fs]), "the decoder looked ahead"
    assert not torch.equal(a[:, 4 * fs:], b[:, 4 * fs:])


@torch.no_grad()
def test_reset_starts_a_fresh_stream():
    codec = _codec()
    latents = torch.randn(1, 3, codec.config.latent_dim)
    codec.start_streaming(1)
    first = codec.decode(latents[:, :1])
    codec.decode(latents[:, 1:])
    codec.reset_streaming()
    assert torch.equal(codec.decode(latents[:, :1]), first)


def test_feeding_a_partial_frame_says_what_to_do():
    codec = _codec()
    try:
        codec.encode(torch.randn(1, 1000))
    except AssertionError as error:
        assert "whole frames" in str(error)
    else:
        raise AssertionError("a partial frame was accepted")


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_a_fresh_codec_carries_its_input_through(name):
    """At initialization the latents and the decoded wave depend on the input, at the input's scale.
    With PyTorch's default conv init they did not (biases outweighed a speech-level signal after a few
    layers), and training from there learned one input-independent sound."""
    from michi_core.model.config import preset

    torch.manual_seed(0)
    codec = Codec(preset(name).codec).eval()
    fs = codec.config.frame_size
    a, b = (torch.randn(1, 6 * fs) * 0.07 for _ in range(2))  # speech-level RMS
    with torch.no_grad():
        za, zb = codec.encode(a).mean, codec.encode(b).mean
        ya, yb = codec.decode(za), codec.decode(zb)
    assert (za - zb).std() > 0.5 * za.std()
    assert (ya - yb).std() > 0.5 * ya.std()
    assert 0.01 < float(ya.std()) < 0.9  # neither vanished nor saturating the output tanh
