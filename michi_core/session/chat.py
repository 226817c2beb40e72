"""`michi chat`: a headless conversation from a WAV file, frame by frame, exactly as the app runs it.

The user's file is streamed through the session one 80 ms frame at a time (the model hears the
user while it speaks); the model's audio is written out, with a JSON transcript of both sides,
frame times and per-step timings. This is how the model is evaluated without a sound card.
"""

from __future__ import annotations

import json
import logging
import statistics
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from michi_core.audio import load_audio, pad_to_frames, save_audio
from michi_core.session.engine import DuplexSession, SamplingSettings, StepResult
from michi_core.model.model import MichiModel

log = logging.getLogger(__name__)

def run_chat(model: MichiModel, input_path: str, output_path: str, system: str | None = None,
             say: str | None = None, voice_path: str | None = None, transcript_path: str | None = None,
             seed: int | None = None, settings: SamplingSettings | None = None, device: str = "cpu",
             dtype: str | torch.dtype | None = torch.float32) -> dict:
    sr = model.config.codec.sample_rate
    fs = model.config.codec.frame_size
    user = pad_to_frames(load_audio(input_path, sr), fs)
    settings = settings or SamplingSettings()
    settings.seed = seed if seed is not None else settings.seed
    session = DuplexSession(model, settings, device=device, dtype=dtype)
    if voice_path:  # a recording's path, or a stored voice's id or name (`michi voices list`)
        from michi_core.stores.voices import resolve_voice  # voices builds on this module: import it only when used

        session.set_voice(resolve_voice(model, voice_path))
    if system:
        session.prefill_text(system)
    if say:
        session.say(say)

    n_input = len(user) // fs
    steps: list[StepResult] = list(session.run(user[i * fs:(i + 1) * fs] for i in range(n_input)))
    audio = np.concatenate([s.audio for s in steps])
    save_audio(output_path, audio, sr)

    frame_s = fs / sr
    transcript = {
        "input": str(input_path),
        "sample_rate": sr,
        "frame_seconds": frame_s,
        "input_frames": n_input,
        "output_frames": len(steps),
        "model_text": "".join(s.model_text for s in steps),
        "user_text": "".join(s.user_text for s in steps),
        "model": [{"frame": s.frame_index, "time": s.frame_index * frame_s, "text": s.model_text}
                  for s in steps if s.model_text],
        "user": [{"frame": s.frame_index, "time": s.frame_index * frame_s, "text": s.user_text}
                 for s in steps if s.user_text],
        "steps": [{"frame": s.frame_index, **asdict(s.timings)} for s in steps],
        "step_ms_p50": statistics.median(s.timings.total_ms for s in steps),
        "step_ms_p95": float(np.percentile([s.timings.total_ms for s in steps], 95)),
    }
    if transcript_path:
        Path(transcript_path).parent.mkdir(parents=True, exist_ok=True)
        Path(transcript_path).write_text(json.dumps(transcript, indent=2) + "\n")
    return transcript
