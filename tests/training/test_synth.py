"""`michi-train data synth`: the CI build, the audio it writes, and resuming after a kill."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import soundfile as sf

from michi_core.model.config import CodecConfig
from training.data.espeak import Espeak
from training.data.manifest import Manifest
from training.data.voices import catalog

CODEC = CodecConfig()


def test_cli_build_writes_24khz_mono_audio_of_the_requested_length(cli_corpus):
    manifest = Manifest(cli_corpus.path)
    rows = [r for r in manifest.rows() if r["path"]]
    total = sum(r["duration"] for r in rows)
    target = cli_corpus.hours * 3600
    assert target <= total < target + 30, f"asked for {cli_corpus.hours} h, got {total / 3600:.4f} h"
    for row in rows:
        info = sf.info(str(manifest.resolve(row["path"])))
        assert (info.samplerate, info.channels) == (CODEC.sample_rate, 1), row["path"]
        assert abs(info.duration - row["duration"]) < 1e-3, f"{row['id']}: file and manifest disagree"
        assert row["speaker"] in catalog() and row["text"]
    assert {r["speaker"].split(":")[0] for r in rows} == {"piper", "espeak"}


def test_espeak_reports_ordered_word_boundaries():
    text = "Mr. Smith bought 2 lbs of flour."
    result = Espeak.get().synthesize(text, "en-us+m3")
    starts = [w.start for w in result.words]
    assert [w.text for w in result.words] == text.split()
    assert starts == sorted(starts) and starts[0] < 0.05, starts
    assert result.words[-1].end == len(result.audio) / result.sample_rate


def test_a_killed_build_resumes_without_losing_or_corrupting_anything(tmp_path, run_cli):
    """SIGKILL the whole build (parent and workers) mid-way; the re-run completes it, and the
    result is the corpus a clean build makes: same ids, texts and speakers, every file whole."""
    corpus, clean = tmp_path / "killed", tmp_path / "clean"
    args = ["--hours", "0.03", "--voices", "piper", "espeak:en-us", "--workers", "1", "--no-progress"]
    command = [sys.executable, "-m", "training.cli", "data", "synth", "--out", str(corpus), *args]
    build = subprocess.Popen(command, cwd=Path(__file__).resolve().parents[2], env=dict(os.environ),
                             start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    written = 0
    while written < 4 and time.time() < deadline and build.poll() is None:
        time.sleep(0.1)
        if (corpus / "manifest.sqlite3").exists():
            with sqlite3.connect(corpus / "manifest.sqlite3") as db:
                written = db.execute("select count(*) from items").fetchone()[0] if _has_items(db) else 0
    assert build.poll() is None, "the build finished before it could be killed: make it longer"
    os.killpg(build.pid, signal.SIGKILL)
    build.wait()
    assert written >= 4

    run_cli("data", "synth", "--out", str(corpus), *args)
    run_cli("data", "synth", "--out", str(clean), *args)
    resumed, fresh = Manifest(corpus), Manifest(clean)
    resumed_rows = {r["id"]: (r["text"], r["speaker"], r["split"]) for r in resumed.rows()}
    fresh_rows = {r["id"]: (r["text"], r["speaker"], r["split"]) for r in fresh.rows()}
    for rows in (resumed_rows, fresh_rows):
        assert sorted(rows) == [f"synth-s0-{i:07d}" for i in range(len(rows))], "job ids without holes"
    # piper's sampling noise makes durations (so the count reaching 0.03 h) vary by an item or so
    assert abs(len(resumed_rows) - len(fresh_rows)) <= 2
    assert all(resumed_rows[i] == fresh_rows[i] for i in set(resumed_rows) & set(fresh_rows))
    for row in resumed.rows():
        audio, rate = sf.read(str(resumed.resolve(row["path"])))
        assert rate == CODEC.sample_rate and abs(len(audio) / rate - row["duration"]) < 1e-3
    assert resumed.total_duration() >= 0.03 * 3600
    again = run_cli("data", "synth", "--out", str(corpus), *args)
    assert '"new_rows": 0' in again.stdout, "a complete build has nothing left to do"


def _has_items(db) -> bool:
    return db.execute("select 1 from sqlite_master where name = 'items'").fetchone() is not None
