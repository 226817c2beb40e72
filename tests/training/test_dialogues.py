"""Two-channel dialogues: both channels, gaps, backchannels, interruptions, retrieval content."""

import json
import re

import numpy as np
import pytest
import soundfile as sf

from michi_core.model.config import CodecConfig
from training.data.dialogues import INTERRUPTION_OPENERS
from training.data.manifest import Manifest

CODEC = CodecConfig()
SILENT_RMS = 1e-4


@pytest.fixture(scope="module")
def dialogue(scripted_dialogue):
    manifest = Manifest(scripted_dialogue)
    row = next(manifest.rows())
    channels = {role: sf.read(str(manifest.resolve(row[key])), dtype="float32")
                for role, key in (("assistant", "path"), ("user", "user_path"))}
    return row, channels


def _rms(audio: np.ndarray, start: float, end: float) -> float:
    piece = audio[int(start * CODEC.sample_rate):int(end * CODEC.sample_rate)]
    return float(np.sqrt(np.mean(piece ** 2))) if len(piece) else 0.0


def test_both_channels_are_24khz_mono_and_equally_long(dialogue):
    row, channels = dialogue
    for audio, rate in channels.values():
        assert rate == CODEC.sample_rate and audio.ndim == 1
        assert abs(len(audio) / rate - row["duration"]) < 1e-3
    roles = {t["role"] for t in row["turns"]}
    assert roles == {"user", "assistant"}
    for turn in row["turns"]:
        audio = channels[turn["role"]][0]
        assert _rms(audio, turn["start"], turn["end"]) > 0.01, f"{turn['role']} silent during its turn"


def test_the_assistant_stops_when_talked_over(dialogue):
    row, channels = dialogue
    turns = [t for t in row["turns"] if not t["backchannel"]]
    cut, interrupting = turns[1], turns[2]
    assert cut["role"] == "assistant" and cut["interrupted"], "the long first answer is interrupted"
    overlap = cut["end"] - interrupting["start"]
    assert 0.2 - 1e-3 <= overlap <= 0.45 + 1e-3, f"the assistant talks on {overlap:.3f} s: no reaction time"
    assert any(interrupting["text"].startswith(opener) for opener in INTERRUPTION_OPENERS)
    assistant, user = channels["assistant"][0], channels["user"][0]
    # both speak during the overlap; the assistant is silent from its cut until its next turn
    assert _rms(assistant, interrupting["start"], cut["end"] - 0.04) > 0.005
    assert _rms(user, interrupting["start"] + 0.05, cut["end"]) > 0.005
    assert _rms(assistant, cut["end"] + 0.01, turns[3]["start"] - 0.01) < SILENT_RMS
    assert all(start < cut["end"] for _, start, _ in cut["words"]), "only the words it started"
    planned = row["text"].splitlines()[1].removeprefix("Assistant: ")
    assert 0 < len(cut["words"]) < len(planned.split()) and planned.startswith(cut["text"])


def test_turns_start_where_their_audio_starts(dialogue):
    """Each turn's clip (speech plus the 0.1 s of silence kept before it) starts at its manifest time."""
    row, channels = dialogue
    rate = CODEC.sample_rate
    for turn in row["turns"]:
        window = channels[turn["role"]][0][int((turn["start"] - 0.2) * rate):]
        onset = turn["start"] - 0.2 + np.flatnonzero(np.abs(window) > 1e-3)[0] / rate
        assert 0 <= onset - turn["start"] < 0.12, f"{turn['text']!r} heard at {onset:.3f} s"


def test_the_listener_backchannels_without_stopping_the_speaker(dialogue):
    row, channels = dialogue
    backchannels = [t for t in row["turns"] if t["backchannel"]]
    assert backchannels, "backchannel_prob=1 and a long uninterrupted answer: expect a 'mm-hm'"
    speaking = [t for t in row["turns"]
                if t["role"] == "assistant" and not t["interrupted"] and not t["backchannel"]]
    for bc in backchannels:
        assert bc["role"] == "user"
        host = next(t for t in speaking if t["start"] < bc["start"] < bc["end"] < t["end"])
        assert _rms(channels["assistant"][0], bc["start"], bc["end"]) > 0.005, "the assistant talks on"
        assert host["end"] - host["start"] >= 2.5


@pytest.fixture(scope="module")
def cli_dialogues(tmp_path_factory, run_cli):
    corpus = tmp_path_factory.mktemp("dialogues")
    out = run_cli("data", "dialogues", "--count", "2", "--out", str(corpus), "--user-voices", "espeak:en-us",
                  "--whisper", "base", "--seed", "1", "--retrieval-share", "1", "--workers", "1",
                  "--no-progress")
    return corpus, json.loads(out.stdout)


def test_cli_makes_retrieval_dialogues_answered_from_their_context(cli_dialogues):
    corpus, summary = cli_dialogues
    manifest = Manifest(corpus)
    rows = list(manifest.rows("kind = 'dialogue'"))
    assert len(rows) == 2 and summary["kept"] + summary["dropped"] == 2
    kept = [r for r in rows if r["filter_reason"] is None]
    assert kept, f"no dialogue survived the ASR check: {summary}"
    for row in kept:
        assert row["assistant_speaker"] == "piper:joe" and row["speaker"].startswith("espeak:en-us+")
        assert manifest.resolve(row["path"]).exists() and manifest.resolve(row["user_path"]).exists()
        assert row["context"], "a retrieval exchange carries its text context"
        answers = [t for t in row["turns"] if t["role"] == "assistant" and not t["backchannel"]]
        first = re.sub(r"[?!,]$", "", answers[0]["text"].split()[-1]).removesuffix(".")
        assert first in row["context"], f"answer {answers[0]['text']!r} not from context {row['context']!r}"
