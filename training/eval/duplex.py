"""Turn-taking of the model against a recorded two-channel dialogue (held out from training).

The model hears the recording's user channel frame by frame, exactly as in a live call, and its
own audio is recorded. Two questions, each measured the same way on the model's audio and on the
recorded assistant channel (the reference a good model should come close to):

- does it stay quiet while the user talks? `voiced_during_user`: the share of user-speech frames
  (frames inside the user's turns, backchannels excluded) in which the assistant's audio is voiced;
- does it answer when the user stops? For each user turn that the recorded assistant answers, the
  answer latency is the number of frames from the end of the user's turn to the first voiced frame
  of the assistant, if one comes within `ANSWER_WINDOW_S`; else the turn is unanswered (and a
  dialogue counts as answered when all its turns are).

"Voiced" is webrtcvad's speech decision per 80 ms frame (training/data/vad.py) on a frame louder
than VOICED_RMS: a frame of faint hiss is not speech to a listener, whatever the VAD says.

Shapes: T - frames.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from michi_core.model.config import CodecConfig
from training.data.vad import speech_frames

ANSWER_WINDOW_S = 2.0  # an answer must start within this long after the user stops
VOICED_RMS = 10 ** (-50 / 20)  # -50 dBFS: quieter frames are silence


def voiced_frames(audio: np.ndarray, codec: CodecConfig) -> np.ndarray:
    """(n,) float32 at the codec rate -> (T,) bool: the frame holds audible speech."""
    num_frames = -(-len(audio) // codec.frame_size)
    padded = np.pad(audio, (0, num_frames * codec.frame_size - len(audio)))
    rms = np.sqrt(np.mean(padded.reshape(num_frames, codec.frame_size) ** 2, axis=1))  # (T,)
    return speech_frames(audio, codec) & (rms > VOICED_RMS)


def user_speech(turns: list[dict[str, Any]], num_frames: int, frame_rate: float) -> np.ndarray:
    """(T,) bool: inside one of the user's turns (backchannels are not turns to yield to)."""
    talking = np.zeros(num_frames, dtype=bool)
    for turn in turns:
        if turn["role"] == "user" and not turn["backchannel"]:
            talking[int(turn["start"] * frame_rate):math.ceil(turn["end"] * frame_rate)] = True
    return talking


def answered_turn_ends(turns: list[dict[str, Any]], frame_rate: float) -> list[int]:
    """Frames where a user turn ends that the recorded assistant answers (a later assistant turn
    that is no backchannel)."""
    ends = []
    for turn in turns:
        if turn["role"] != "user" or turn["backchannel"]:
            continue
        answer = any(t["role"] == "assistant" and not t["backchannel"] and t["start"] > turn["start"] for t in turns)
        if answer:
            ends.append(math.ceil(turn["end"] * frame_rate))
    return ends


def answer_latencies(voiced: np.ndarray, turn_ends: list[int], window_frames: int) -> list[int | None]:
    """Frames from each turn end to the first voiced frame, None when none comes within the window."""
    latencies: list[int | None] = []
    for end in turn_ends:
        hits = np.flatnonzero(voiced[end:end + window_frames])
        latencies.append(int(hits[0]) if len(hits) else None)
    return latencies


def dialogue_turn_taking(model_audio: np.ndarray, reference_audio: np.ndarray, turns: list[dict[str, Any]],
                         codec: CodecConfig, window_s: float = ANSWER_WINDOW_S) -> dict[str, Any]:
    """One dialogue's measures for the model and for the recorded assistant (see the module doc)."""
    rate = codec.frame_rate
    model_voiced = voiced_frames(model_audio, codec)
    reference_voiced = voiced_frames(reference_audio, codec)
    num_frames = max(len(model_voiced), len(reference_voiced))
    model_voiced = np.pad(model_voiced, (0, num_frames - len(model_voiced)))
    reference_voiced = np.pad(reference_voiced, (0, num_frames - len(reference_voiced)))
    talking = user_speech(turns, num_frames, rate)
    ends = answered_turn_ends(turns, rate)
    window = round(window_s * rate)
    return {
        "frames": num_frames,
        "user_frames": int(talking.sum()),
        "model_voiced_during_user": int((model_voiced & talking).sum()),
        "reference_voiced_during_user": int((reference_voiced & talking).sum()),
        "model_latencies": answer_latencies(model_voiced, ends, window),
        "reference_latencies": answer_latencies(reference_voiced, ends, window),
    }


def summarize(dialogues: list[dict[str, Any]]) -> dict[str, float | int | None]:
    """Totals over dialogues: frame shares pooled, latencies as medians over answered turns."""
    user_frames = sum(d["user_frames"] for d in dialogues)
    summary: dict[str, float | int | None] = {"dialogues": len(dialogues),
                                              "turns": sum(len(d["model_latencies"]) for d in dialogues)}
    for who in ("model", "reference"):
        latencies = [lat for d in dialogues for lat in d[f"{who}_latencies"]]
        answered = [lat for lat in latencies if lat is not None]
        summary[f"{who}_voiced_during_user"] = (sum(d[f"{who}_voiced_during_user"] for d in dialogues) / user_frames
                                                if user_frames else None)
        summary[f"{who}_answered_turns"] = len(answered) / len(latencies) if latencies else None
        summary[f"{who}_answered_dialogues"] = (
            float(np.mean([all(lat is not None for lat in d[f"{who}_latencies"]) for d in dialogues]))
            if dialogues else None)
        summary[f"{who}_latency_frames"] = float(np.median(answered)) if answered else None
    return summary
