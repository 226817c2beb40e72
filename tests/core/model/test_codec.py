"""The codec: one latent per frame over the 22.4 kHz mel framing, KL, causality, and streaming
(frame by frame == the same algorithm on the whole clip, for the encoder, the decoder and a session
that swaps its streaming state in and out)."""

import json

import pytest
import torch

from michi_core.model.codec import Codec, Posterior
from michi_core.model.config import CheckpointError, CodecConfig, tiny

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _codec(config: CodecConfig | None = None) -> Codec:
    torch.manual_seed(0)
    return Codec(config or tiny().codec).eval()


def _speechlike(frames: int, fs: int = 1920, seed: int = 0) -> torch.Tensor:
    """A harmonic tone with a syllable-rate envelope (enough structure for the mel and the vocoder)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(frames * fs) / 24_000
    f0 = 110 + 40 * torch.rand(1, generator=g)
    wave = sum(torch.sin(2 * torch.pi * f0 * k * t) / k for k in range(1, 8))
    return (0.1 * wave * (0.55 + 0.45 * torch.sin(2 * torch.pi * 4 * t)))[None].float()


def test_one_latent_per_frame_and_frame_size_samples_per_latent():
    codec = _codec()
    c = codec.config
    assert c.mel_frames_per_frame == 7  # 1920 samples at 24 kHz = 1792 at 22.4 kHz = 7 hops of 256
    wave = torch.randn(2, 5 * c.frame_size) * 0.1
    posterior = codec.encode(wave)
    assert posterior.mean.shape == (2, 5, c.latent_dim)
    assert codec.mel(wave).shape == (2, c.n_mels, 35)
    assert codec.decode(posterior.mean).shape == (2, 5 * c.frame_size)


def test_kl_is_zero_exactly_at_the_prior_and_positive_elsewhere():
    zeros = torch.zeros(1, 3, 4)
    assert Posterior(zeros, zeros).kl().item() == 0.0
    assert Posterior(zeros + 1.0, zeros).kl().item() > 0.4


@torch.no_grad()
def test_decoding_frame_by_frame_equals_decoding_the_whole_clip():
    codec = _codec()
    latents = torch.randn(1, 12, codec.config.latent_dim)
    offline = codec.decode(latents)
    codec.start_streaming(1)
    streamed = torch.cat([codec.decode(latents[:, i:i + 1]) for i in range(latents.shape[1])], dim=1)
    codec.stop_streaming()
    assert streamed.shape == offline.shape
    # the same arithmetic up to float summation order (streaming convs run as matmuls)
    assert (streamed - offline).abs().max() <= 2e-4 * offline.abs().max()


@torch.no_grad()
def test_encoding_frame_by_frame_equals_encoding_the_whole_clip():
    codec = _codec()
    fs = codec.config.frame_size
    wave = _speechlike(9)
    offline = codec.encode(wave).mean
    codec.start_streaming(1)
    streamed = torch.cat([codec.encode(wave[:, i * fs:(i + 1) * fs]).mean for i in range(9)], dim=1)
    assert (streamed - offline).abs().max().item() <= 1e-4


@torch.no_grad()
def test_a_session_can_park_its_stream_and_resume_it_exactly():
    """Two interleaved streams, each swapped in with set_streaming_state (which checks every entry),
    give what each would give alone."""
    codec = _codec()
    a, b = torch.randn(1, 6, codec.config.latent_dim), torch.randn(1, 6, codec.config.latent_dim)
    alone = codec.decode(a)
    codec.start_streaming(1)
    state_a = codec.get_streaming_state()
    codec.start_streaming(1)
    state_b = codec.get_streaming_state()
    out = []
    for i in range(6):
        codec.set_streaming_state(state_a)
        out.append(codec.decode(a[:, i:i + 1]))
        state_a = codec.get_streaming_state()
        codec.set_streaming_state(state_b)
        codec.decode(b[:, i:i + 1])
        state_b = codec.get_streaming_state()
    codec.stop_streaming()
    assert (torch.cat(out, 1) - alone).abs().max() <= 2e-4 * alone.abs().max()


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
    wave = _speechlike(6)
    later = wave.clone()
    later[:, 4 * fs:] = 0
    assert torch.equal(codec.encode(wave).mean[:, :4], codec.encode(later).mean[:, :4]), "the encoder looked ahead"


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
    with pytest.raises(AssertionError, match="whole frames"):
        codec.encode(torch.randn(1, 1000))


def test_only_the_autoencoder_is_trained_and_saved():
    codec = _codec()
    saved = set(codec.state_dict())
    assert saved and all(k.startswith(("encoder.", "decoder.")) for k in saved), sorted(saved)[:5]
    assert {n.split(".")[0] for n, _ in codec.named_parameters()} == {"encoder", "decoder"}


def test_a_checkpoint_round_trips_and_an_old_waveform_codec_is_named(tmp_path):
    codec = _codec()
    codec.save_pretrained(tmp_path / "codec")
    loaded = Codec.from_pretrained(tmp_path / "codec")
    for key, value in codec.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    old = json.loads((tmp_path / "codec" / "config.json").read_text())
    old["codec"] = {"sample_rate": 24000, "frame_size": 1920, "latent_dim": 32, "encoder_channels": 32,
                    "encoder_strides": [4, 4, 5, 6, 4], "decoder_channels": 256,
                    "decoder_upsample_rates": [8, 5, 4, 4, 3]}
    (tmp_path / "codec" / "config.json").write_text(json.dumps(old))
    with pytest.raises(CheckpointError, match="waveform-codec checkpoint.*retired"):
        Codec.from_pretrained(tmp_path / "codec")


def test_a_fresh_codec_carries_its_input_through():
    """At initialization the latents depend on the input at the input's scale: training starts from a
    codec whose output follows its input, not from one input-independent sound."""
    codec = _codec()
    a, b = _speechlike(6, seed=1), _speechlike(6, seed=2) * 0.5
    with torch.no_grad():
        za, zb = codec.encode(a).mean, codec.encode(b).mean
        ma, mb = codec.decode_mel(za), codec.decode_mel(zb)
    assert (za - zb).std() > 0.1  # latents of unit scale, moved by the input
    assert (ma - mb).abs().mean() > 0.05
