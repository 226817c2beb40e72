"""A windowed build (Windows .exe with console=False, macOS .app) starts with sys.stdout and
sys.stderr set to None: `michi` must still run, and what it prints must land in a log file in the
user data dir rather than crash the first print() or log call."""

from __future__ import annotations

import logging
import sys

from app.cli import main


def test_without_a_console_output_goes_to_the_log_file(michi_home, monkeypatch):
    monkeypatch.setattr(sys, "stdout", None)
    monkeypatch.setattr(sys, "stderr", None)
    try:
        code = main(["info", "--preset", "tiny"])
        log_stream = sys.stdout
        assert code == 0
        assert log_stream is sys.stderr and log_stream is not None, "stdout and stderr were left as None"
    finally:
        if sys.stdout is not None:
            sys.stdout.close()
        root = logging.getLogger()
        for handler in [h for h in root.handlers if getattr(h, "stream", None) is sys.stdout]:
            root.removeHandler(handler)
    log_file = michi_home / "data" / "michi.log"
    assert log_file.is_file(), "no log file in the user data dir"
    printed = log_file.read_text(encoding="utf-8")
    assert "Michi preset 'tiny'" in printed and "total" in printed, \
        f"`michi info` output did not reach {log_file}:\n{printed}"
