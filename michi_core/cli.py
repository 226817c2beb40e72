"""The `michi` subcommands that need only michi_core (info, bench, chat, codec), and the one
place that mounts every command module: `add_commands` (used by `app/cli.py`, which adds the
desktop app's options) and `python -m michi_core.cli` (the same commands where Qt is missing).

Every command module follows `michi_core.console`: `register(commands)`, commands that raise
the errors `console.run` turns into one clear line and a non-zero exit.
"""

from __future__ import annotations

import argparse
import logging
import sys

from michi_core import console
from michi_core.console import CliError, clean
from michi_core.model.config import PRESETS, preset

log = logging.getLogger(__name__)


def parameter_breakdown(preset_name: str) -> list[tuple[str, int]]:
    """(component, exact parameter count) rows, built on the meta device: no weights needed."""
    from michi_core.model.model import MichiModel

    model = MichiModel(preset(preset_name), meta=True)

    def count(module) -> int:
        return sum(p.numel() for p in module.parameters())

    backbone = model.backbone
    embed = count(backbone.get_input_embeddings())
    rows = [
        ("backbone: text embeddings (tied with the text head)", embed),
        (f"backbone: {model.config.backbone.num_layers} transformer layers + norm", count(backbone) - embed),
        ("listen head", count(model.listen)),
        ("flow speak head", count(model.flow)),
        ("audio latent input projection", count(model.audio_in)),
        ("codec encoder (log-mel -> latents)", count(model.codec.encoder)),
        ("codec decoder (latents -> log-mel)", count(model.codec.decoder)),
    ]
    # the pretrained vocoder is frozen (its tensors are buffers, not parameters) but it is part of the model
    vocoder = sum(b.numel() for b in model.codec.vocoder.buffers())
    rows.append(("codec vocoder (pretrained HiFi-GAN V1, frozen)", vocoder))
    rows.append(("total", count(model) + vocoder))
    return rows


def cmd_info(args: argparse.Namespace) -> int:
    config = preset(args.preset)
    c, b = config.codec, config.backbone
    print(f"Michi preset {args.preset!r}")
    print(f"  backbone: {b.source} {b.name_or_path or ''} — width {b.hidden_size}, {b.num_layers} layers, "
          f"{b.num_heads}/{b.num_kv_heads} heads, vocab {b.vocab_size}, window {b.max_positions} positions")
    print(f"  audio: {c.sample_rate} Hz, frame {c.frame_size} samples ({c.frame_ms:.0f} ms, "
          f"{c.frame_rate:g} Hz), latent {c.latent_dim}-d")
    print(f"  flow head: {config.flow.num_blocks} blocks × {config.flow.width}, "
          f"{config.flow.sample_steps} Euler step(s) by default")
    print()
    rows = parameter_breakdown(args.preset)
    width = max(len(name) for name, _ in rows)
    for name, n in rows:
        print(f"  {name:<{width}}  {n:>13,}  ({n / 1e6:8.2f} M)")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from michi_core.session.bench import bench_command

    bench_command(args.preset, args.device, args.frames, args.json, args.checkpoint,
                  args.variants.split(","), args.threads)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from michi_core.model.model import load_model
    from michi_core.session.chat import AudioFrames, check_output, run_chat
    from michi_core.session.engine import SamplingSettings
    from michi_core.session.hearing import HearingSettings

    # Everything that can be checked without the model is, before loading it and stepping it.
    check_output(args.output)
    if args.transcript:
        check_output(args.transcript, audio=False)
    AudioFrames(args.input, 1, 1)  # the input is a readable audio file
    model = load_model(args.checkpoint, args.preset)
    settings = SamplingSettings(text_temperature=args.temperature, pad_bias=args.pad_bias,
                                flow_steps=args.flow_steps)
    transcript = run_chat(model, args.input, args.output, system=args.system, say=args.say,
                          voice_path=args.voice, transcript_path=args.transcript, seed=args.seed,
                          settings=settings, device=args.device, dtype=args.dtype,
                          hearing=None if args.hearing == "off" else HearingSettings(model=args.hearing))
    print(f"wrote {clean(args.output)}: {transcript['output_frames']} frames "
          f"({transcript['output_frames'] * transcript['frame_seconds']:.2f} s); "
          f"step p50 {transcript['step_ms_p50']:.1f} ms, p95 {transcript['step_ms_p95']:.1f} ms")
    if transcript["model_text"]:
        print(f"model said: {clean(transcript['model_text'].strip())}")
    if transcript["user_text"]:
        print(f"heard the user: {clean(transcript['user_text'].strip())}")
    return 0


def cmd_codec(args: argparse.Namespace) -> int:
    """Resynthesize a file through the codec, frame by frame on the streaming path, streaming the
    files too (memory is the same for a second or an hour)."""
    import numpy as np
    import torch

    from michi_core.model.model import DEFAULT_CHECKPOINT, shipped_codec
    from michi_core.session.chat import AudioFileWriter, AudioFrames, check_output

    check_output(args.output)
    checkpoint = args.checkpoint
    if checkpoint is None:
        checkpoint = DEFAULT_CHECKPOINT if (DEFAULT_CHECKPOINT / "config.json").is_file() else shipped_codec("small")
    if checkpoint is None:
        raise CliError("no trained codec is shipped with this copy; give one with --checkpoint DIR")
    codec = load_codec(checkpoint)
    c = codec.config
    frames = AudioFrames(args.input, c.sample_rate, c.frame_size)
    # The output lags the input by the codec's delay (analysis window, vocoder look-ahead): drop that much
    # from the start and feed silence at the end, so the file lines up with its input, sample for sample.
    delay = round(codec.delay_seconds * c.sample_rate)
    produced = 0  # samples decoded so far

    def resynthesize(frame, writer, limit=None):
        nonlocal produced
        audio = codec.decode(codec.encode(torch.from_numpy(frame)[None]).mean)[0].numpy()
        start, produced = max(0, delay - produced), produced + len(audio)
        writer.write(audio[start:limit])

    with torch.inference_mode(), AudioFileWriter(args.output, c.sample_rate) as writer:
        codec.start_streaming(1)
        for frame in frames:
            resynthesize(frame, writer)
        silence = np.zeros(c.frame_size, np.float32)
        while produced < delay + frames.frames_read * c.frame_size:
            resynthesize(silence, writer, limit=delay + frames.frames_read * c.frame_size - produced)
    print(f"wrote {clean(args.output)}: {frames.frames_read} frames through the streaming codec "
          f"({clean(checkpoint)})")
    return 0


def load_codec(checkpoint):
    """Codec.from_pretrained, the checkpoint's config and safetensors header checked first so
    that a junk file is a clear message, not a library's traceback."""
    from michi_core.model.codec import Codec
    from michi_core.model.model import check_checkpoint_files, check_safetensors

    _, weights = check_checkpoint_files(checkpoint)
    check_safetensors(weights)
    return Codec.from_pretrained(checkpoint)


def register(commands) -> None:
    """info, bench, codec and chat (see `michi_core.console`)."""
    presets = sorted(PRESETS)
    p = commands.add_parser("info", help="show a preset's components and exact parameter counts")
    p.add_argument("--preset", default="small", choices=presets)
    p.set_defaults(func=cmd_info)

    p = commands.add_parser("bench", help="latency benchmark of the streaming engine")
    p.add_argument("--preset", default="small", choices=presets)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--frames", type=int, default=200, help="frames to time (80 ms each)")
    p.add_argument("--json", help="where to write the JSON (default benchmarks/results/...)")
    p.add_argument("--checkpoint", help="checkpoint directory (default: the preset, random heads)")
    p.add_argument("--variants", default="fp32",
                   help="comma-separated: fp32,bf16,int8,llama.cpp (the backbone in llama.cpp)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=cmd_bench)

    p = commands.add_parser("codec", help="resynthesize an audio file through the streaming codec")
    p.add_argument("--input", required=True, help="any audio file (any rate, mono or stereo)")
    p.add_argument("--output", required=True, help="WAV file to write (24 kHz)")
    p.add_argument("--checkpoint", help="codec or model checkpoint directory (default: the shipped one)")
    p.set_defaults(func=cmd_codec)

    p = commands.add_parser("chat", help="headless conversation: stream a WAV file through the model")
    p.add_argument("--input", required=True, help="the user's audio (any rate, mono or stereo)")
    p.add_argument("--output", required=True, help="where to write the model's audio (WAV)")
    p.add_argument("--checkpoint", help="checkpoint directory (default: the shipped model)")
    p.add_argument("--preset", choices=presets, help="a preset instead of a checkpoint (untrained heads)")
    p.add_argument("--system", help="system prompt")
    p.add_argument("--say", help="text the model must speak (causal TTS)")
    p.add_argument("--voice", help="the voice to speak with (zero-shot cloning): a recording's path, or a "
                                   "stored voice's id or name (`michi voices list`)")
    p.add_argument("--transcript", help="write a JSON transcript with frame times and step timings")
    p.add_argument("--seed", type=int)
    p.add_argument("--temperature", type=float, default=0.7, help="text sampling temperature")
    p.add_argument("--pad-bias", type=float, default=0.0, help="> 0 speaks less eagerly, < 0 more")
    p.add_argument("--flow-steps", type=int, default=1, help="Euler steps of the speak head")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"],
                   help="backbone precision (auto: bf16 on CUDA and on CPUs with native bf16)")
    p.add_argument("--hearing", default="base",
                   help="the recognizer of the user's words: base, tiny.en, a CTranslate2 Whisper folder, "
                        "or 'off' (the listen head's own text)")
    p.set_defaults(func=cmd_chat)


def add_commands(commands) -> None:
    """Every `michi` subcommand, one registration pattern (`michi_core.console`)."""
    from michi_core.stores import voices_cli
    from michi_core.stores.rag import cli as docs_cli

    for module_register in (register, docs_cli.register, voices_cli.register):
        module_register(commands)


def main(argv: list[str] | None = None) -> int:
    """`python -m michi_core.cli`: the subcommands without the desktop app."""
    return console.main(add_commands, "python -m michi_core.cli", argv)


if __name__ == "__main__":
    sys.exit(main())
