"""Intelligibility of a speech stack: say held-out sentences, let Whisper hear them, score WER.

Used for the learning curve of `michi-train speak` (each saved checkpoint, WER against training time)
and by the speak stage's final report. The sentences are the voice corpus's valid/test texts, which
never occur in its train split.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from michi_core.model.speech import speak_latents

log = logging.getLogger(__name__)


@torch.no_grad()
def say_texts(stack, backbone, tokenizer, codec, texts: list[str], seed: int = 0) -> list[np.ndarray]:
    """Each text said by the stack, decoded by the codec: 24 kHz waves."""
    waves = []
    frame_rate = codec.config.frame_rate
    for k, text in enumerate(texts):
        max_frames = int(frame_rate * (2.0 + 0.12 * len(text)))  # ~2x a normal pace
        latents, _ = speak_latents(stack, backbone, tokenizer, text, max_frames, seed=seed + k)
        with codec.offline() if hasattr(codec, "offline") else torch.no_grad():
            wave = codec.decode(latents[None])[0]
        waves.append(wave.float().numpy())
    return waves


def say_wer(stack, backbone, tokenizer, codec, texts: list[str], transcriber, seed: int = 0,
            audio_dir: Path | None = None) -> dict:
    from training.eval.asr import word_error_rate

    started = time.perf_counter()
    waves = say_texts(stack, backbone, tokenizer, codec, texts, seed)
    spoken = time.perf_counter() - started
    sr = codec.config.sample_rate
    heard = [transcriber(w, sr) for w in waves]
    if audio_dir is not None:
        from michi_core.audio import save_audio

        for k, w in enumerate(waves):
            save_audio(Path(audio_dir) / f"say{k:02d}.flac", w, sr)
    items = [{"text": t, "heard": h, "seconds": len(w) / sr} for t, h, w in zip(texts, heard, waves)]
    return {"wer": word_error_rate(texts, heard), "sentences": len(texts), "speak_seconds": spoken,
            "items": items}


def held_out_sentences(corpus: str | Path, limit: int) -> list[str]:
    """The voice corpus's held-out texts (valid, then test), in a stable order."""
    from training.eval.heldout import held_out_rows

    return [row["text"] for row in held_out_rows(corpus, "utterance")][:limit]


def load_stack(directory: str | Path, weights: str | Path | None = None):
    """A speech stack from an export (speech_config.json + speech.safetensors) or a trainer checkpoint
    (`weights`: its speech.safetensors, the config from the run's export or run folder)."""
    import json

    from safetensors.torch import load_file

    from michi_core.model.config import speech_config_from_dict
    from michi_core.model.speech import SpeechStack

    config = speech_config_from_dict(json.loads(Path(directory, "speech_config.json").read_text()))
    state = load_file(str(weights or Path(directory, "speech.safetensors")))
    stack = SpeechStack(config, state["latent_mean"].shape[0], state["backbone_in.weight"].shape[1])
    stack.load_state_dict(state)
    return stack.eval()


def learning_curve(run_dir: str | Path, corpus: str | Path, codec_dir: str | Path, limit: int = 12,
                   whisper: str = "base", preset_name: str = "small", every: int = 1) -> list[dict]:
    """say() WER of every checkpoint in the run not yet scored; appended to <run>/curve.json
    (step, wall-clock training seconds, WER), so it can run beside training, again and again."""
    import json

    from michi_core.model.backbone import build_backbone
    from michi_core.model.codec import Codec
    from michi_core.model.config import preset
    from michi_core.model.tokenizer import load_tokenizer
    from training.eval.asr import Transcriber

    run_dir = Path(run_dir)
    curve_path = run_dir / "curve.json"
    curve = json.loads(curve_path.read_text()) if curve_path.is_file() else []
    done = {point["step"] for point in curve}
    todo = [c for c in sorted((run_dir / "checkpoints").glob("step_*"))
            if int(c.name.split("_")[1]) not in done and int(c.name.split("_")[1]) % every == 0]
    if not todo:
        return curve
    config = preset(preset_name)
    tokenizer = load_tokenizer(config.backbone)
    backbone = build_backbone(config.backbone).eval()
    codec = Codec.from_pretrained(codec_dir).eval()
    transcriber = Transcriber(whisper)
    texts = held_out_sentences(corpus, limit)
    for checkpoint in todo:
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        stack = load_stack(run_dir, checkpoint / "speech.safetensors")
        result = say_wer(stack, backbone, tokenizer, codec, texts, transcriber,
                         audio_dir=run_dir / "curve_audio" / checkpoint.name)
        seconds = [h["train_seconds"] for h in state["history"] if "train_seconds" in h]
        point = {"step": state["step"], "train_seconds": seconds[-1] if seconds else None, "wer": result["wer"],
                 "sentences": len(texts), "heard": [i["heard"] for i in result["items"][:3]]}
        log.info("curve: %s", point)
        curve.append(point)
        curve_path.write_text(json.dumps(sorted(curve, key=lambda p: p["step"]), indent=1))
    return curve


def say_ttfa(model, text: str = "Hello, how can I help?", repeats: int = 5, dtype: str = "auto",
             threshold: float = 0.02) -> dict:
    """Time to first audio of say() through the engine: from the call to the first returned frame whose
    sound is speech (peak above `threshold`), stepping back to back (compute-bound), after a system
    prompt. The frames before it are the text lead and the model's own wait; in a live call each of
    them also takes a frame's time (80 ms) unless the compute is slower."""
    import os

    from michi_core.session.engine import DuplexSession, SamplingSettings

    session = DuplexSession(model, SamplingSettings(seed=0), dtype=dtype)
    silence = np.zeros(model.config.codec.frame_size, np.float32)
    runs = []
    for k in range(repeats + 1):
        session.reset()
        session.prefill_text("You are Michi, a helpful voice assistant.")
        for _ in range(3):
            session.step(silence)
        start = time.perf_counter()
        session.say(text)
        step_ms = []
        for frames in range(1, 40):  # noqa: B007 (read after the loop)
            t = time.perf_counter()
            result = session.step(silence)
            step_ms.append(1000 * (time.perf_counter() - t))
            if float(np.abs(result.audio).max()) > threshold:
                break
        if k:  # the first run warms up
            runs.append({"compute_ms": 1000 * (time.perf_counter() - start), "frames": frames,
                         "step_ms": step_ms})
    frame_ms = model.config.codec.frame_ms
    compute = sorted(r["compute_ms"] for r in runs)[len(runs) // 2]
    frames = sorted(r["frames"] for r in runs)[len(runs) // 2]
    step = sorted(s for r in runs for s in r["step_ms"])
    return {"text": text, "repeats": repeats, "backbone_dtype": str(session.backbone_dtype),
            "compute_ms_p50": compute, "frames_to_speech_p50": frames,
            "step_ms_p50": step[len(step) // 2],
            # live: every frame before the speech frame is paced at frame_ms (or its compute if slower)
            "live_ttfa_ms_p50": (frames - 1) * max(frame_ms, step[len(step) // 2]) + step[len(step) // 2],
            "codec_lookahead_ms": 1000 * model.codec.lookahead_seconds,
            "load_average_1m": round(os.getloadavg()[0], 2), "threads": torch.get_num_threads()}
