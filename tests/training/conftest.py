"""Shared fixtures for the training-data tests: Whisper models and the voices loaded once, and one
small corpus built through the real CLI (`michi-train data synth` + `data align`).

MICHI_HOME is a fresh temporary folder per test (tests/conftest.py); the cache (where Whisper base
is assembled once) is the persistent test cache."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLI_HOURS = 0.05  # the CI build: 3 minutes of audio


def _run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`michi-train ...` in a fresh process (what a user runs), failing loudly with its output."""
    result = subprocess.run([sys.executable, "-m", "training.cli", *args], cwd=REPO, env=dict(os.environ),
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"michi-train {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="session")
def run_cli():
    return _run_cli


@dataclass
class CliCorpus:
    path: Path
    hours: float


@pytest.fixture(scope="session")
def tiny_aligner():
    from training.data.align import Aligner

    return Aligner("tiny.en")


@pytest.fixture(scope="session")
def base_aligner():
    from training.data.align import Aligner

    return Aligner("base")


@pytest.fixture(scope="session")
def voice_bank():
    from michi_core.model.config import CodecConfig
    from training.data.voices import VoiceBank

    return VoiceBank(CodecConfig().sample_rate)


@pytest.fixture(scope="session")
def cli_corpus(tmp_path_factory) -> CliCorpus:
    """A 0.05 h corpus: piper + every en-us espeak variant (so valid/test speakers exist), aligned
    with Whisper tiny.en, built by the console commands exactly as CI runs them."""
    corpus = tmp_path_factory.mktemp("cli_corpus")
    _run_cli("data", "synth", "--hours", str(CLI_HOURS), "--out", str(corpus), "--voices", "piper",
             "espeak:en-us", "--workers", "2", "--no-progress")
    _run_cli("data", "align", "--out", str(corpus), "--whisper", "tiny.en", "--workers", "1", "--no-progress")
    return CliCorpus(corpus, CLI_HOURS)


@pytest.fixture(scope="session")
def scripted_dialogue(tmp_path_factory, voice_bank, base_aligner) -> Path:
    """A corpus holding one scripted dialogue voiced for real, interruptions and backchannels
    switched on: the user cuts into the long first answer and says "mm-hm" during the second."""
    from training.data.dialogues import DialogueJob, DialogueOptions, compose
    from training.data.manifest import Manifest
    from training.data.textgen import Script, Turn

    corpus = tmp_path_factory.mktemp("dialogue")
    script = Script([
        Turn("user", "What's the weather like in Boston today?"),
        Turn("assistant", "It's sunny and about twenty degrees, so take a light jacket if you're going out "
                          "later this evening."),
        Turn("user", "Can you set an alarm for seven tomorrow?"),
        Turn("assistant", "Done. Your alarm is set for seven tomorrow morning, and I'll remind you again "
                          "before you go to bed tonight."),
    ])
    job = DialogueJob(0, "dialogue-test-000000", "train", ["espeak:en-us+m3", "espeak:en-gb-x-rp+m1"],
                      "piper:joe", script, corpus, "audio/dialogues/test/dialogue-test-000000",
                      DialogueOptions(interrupt_prob=1.0, backchannel_prob=1.0))
    row = compose(job, voice_bank, base_aligner)
    assert row.get("filter_reason") is None, "the scripted dialogue should pass the ASR check"
    Manifest(corpus).add(row)
    return corpus
