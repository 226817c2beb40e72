"""`michi --self-test` as a user or CI runs it: a real process, its exit code and its summary."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import soundfile as sf

from app.cli import main
from app.self_test import synthetic_voice

REPO = Path(__file__).resolve().parents[2]


def run_michi(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_self_test_runs_a_wav_through_the_app_and_exits_0(tmp_path):
    wav = tmp_path / "me.wav"
    sf.write(wav, synthetic_voice(3.0, sample_rate=16_000), 16_000)  # any rate: the device resamples
    result = run_michi("--self-test", "--preset", "tiny", "--input", str(wav), "--seconds", "2.5")
    assert result.returncode == 0, f"self-test failed:\n{result.stdout}\n{result.stderr[-3000:]}"
    lines = result.stdout.splitlines()
    assert lines[0] == "michi self-test: OK"
    frames = next(line for line in lines if "frames stepped:" in line)
    assert int(frames.split(":")[1].split()[0]) >= 25, "2.5 s of input is ~31 frames of 80 ms"
    assert any(line.strip().startswith("underruns:") for line in lines)
    assert any("step p50 / p95:" in line for line in lines)
    assert any("conversation saved:" in line for line in lines)
    assert any("your data:" in line and "healthy" in line for line in lines), "the user's own store is checked"


def test_self_test_fails_when_the_users_own_database_is_damaged(michi_home):
    database = michi_home / "data" / "michi.sqlite3"
    database.parent.mkdir(parents=True)
    database.write_bytes(b"SQLite format 3\x00" + os.urandom(8192))
    before = database.read_bytes()
    result = run_michi("--self-test", "--preset", "tiny", "--seconds", "1")
    assert result.returncode != 0
    first = result.stdout.splitlines()[0]
    assert first.startswith("michi self-test: FAILED") and "your data cannot be saved" in first, result.stdout
    assert "damaged" in first and ".recover" in result.stdout
    assert database.read_bytes() == before, "checked read-only"


def test_self_test_refuses_an_input_that_is_not_audio(tmp_path, capsys):
    text = tmp_path / "notaudio.wav"
    text.write_text("these are words, not sound")
    assert main(["--self-test", "--preset", "tiny", "--input", str(text)]) == 2
    assert "is not a readable audio file" in capsys.readouterr().out


def test_self_test_fails_with_a_clear_message_on_a_missing_input(tmp_path, capsys):
    code = main(["--self-test", "--preset", "tiny", "--input", str(tmp_path / "nothing.wav")])
    assert code != 0
    assert "no such input file" in capsys.readouterr().out


def test_core_commands_work_without_qt():
    """`michi info` must not need PySide6 (servers, minimal CI images)."""
    code = ("import sys; sys.modules['PySide6'] = None; from app.cli import main; "
            "sys.exit(main(['info', '--preset', 'tiny']))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Michi preset 'tiny'" in result.stdout


def test_the_app_without_a_display_says_so_instead_of_crashing(monkeypatch, capsys):
    from app.cli import main

    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    assert main([]) == 2
    assert "needs a display" in capsys.readouterr().err
