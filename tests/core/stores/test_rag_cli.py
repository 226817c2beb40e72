"""`michi docs`: add, list, search, disable, remove, against the database under $MICHI_HOME.

Most commands run in-process (`main(argv)`) so the embedding model loads once per test session;
one test runs the standalone `python -m michi_core.stores.rag.cli` in a child process.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from michi_core.stores.rag.cli import main, register
from michi_core.stores.rag.store import DocumentStore

REPO = Path(__file__).resolve().parents[3]
CORPUS = REPO / "tests" / "data" / "rag" / "corpus"


def python_path() -> str:
    """The checkout first, so a child process imports this michi_core whether installed or not."""
    return os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))


def test_add_list_search_disable_remove(tmp_path, capsys):
    bad = tmp_path / "broken.pdf"
    bad.write_bytes(b"%PDF-1.4 this is not really a pdf")

    exit_code = main(["docs", "add", str(CORPUS / "espresso_manual.pdf"), str(bad)])
    assert exit_code == 1, "a failed file fails the run"
    out = capsys.readouterr().out
    assert "indexed" in out and "7 chunks; 3 pages" in out
    assert "failed" in out and "broken.pdf" in out and "PDF" in out

    assert main(["docs", "add", str(CORPUS / "espresso_manual.pdf")]) == 0
    assert "duplicate" in capsys.readouterr().out

    assert main(["docs", "list"]) == 0
    out = capsys.readouterr().out
    assert "Barista 3000 Espresso Machine" in out and "broken.pdf" in out and "failed" in out

    assert main(["docs", "search", "how often should I descale", "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1. Barista 3000 Espresso Machine, page") and "descal" in out
    assert "2. " in out and "3. " not in out

    with DocumentStore() as store:
        manual_id = next(d.id for d in store.documents() if d.status == "indexed")
    assert main(["docs", "disable", str(manual_id)]) == 0
    capsys.readouterr()
    assert main(["docs", "search", "descale"]) == 0
    assert "no results" in capsys.readouterr().out

    assert main(["docs", "remove", str(manual_id), "999"]) == 1
    captured = capsys.readouterr()
    assert f"removed #{manual_id}" in captured.out and "no document #999" in captured.err
    with DocumentStore() as store:
        assert [d.status for d in store.documents()] == ["failed"]


def test_folders_are_expanded(tmp_path, capsys):
    folder = tmp_path / "notes"
    (folder / "deeper").mkdir(parents=True)
    (folder / "a.md").write_text("# A\nAlpha notes about the garden shed.")
    (folder / "deeper" / "b.txt").write_text("Bravo notes about the bicycle lock code.")
    (folder / "ignored.png").write_bytes(b"\x89PNG")
    assert main(["docs", "add", str(folder)]) == 0
    out = capsys.readouterr().out
    assert out.count("indexed") == 2 and "ignored.png" not in out


def test_mounts_under_another_parser():
    """How app/cli.py uses it: its own top-level parser, our `docs` subcommand."""
    parser = argparse.ArgumentParser(prog="michi")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["docs", "search", "coffee", "-k", "3"])
    assert args.query == "coffee" and args.limit == 3 and callable(args.func)


def test_standalone_module_runs(michi_home, tmp_path):
    note = tmp_path / "empty.txt"
    note.write_text("")
    env = {**os.environ, "PYTHONPATH": python_path()}

    def run(*argv):
        return subprocess.run([sys.executable, "-m", "michi_core.stores.rag.cli", "docs", *argv],
                              capture_output=True, text=True, env=env, timeout=120)

    listing = run("list")
    assert listing.returncode == 0 and "no documents yet" in listing.stdout
    added = run("add", str(note))
    assert added.returncode == 1 and "the file is empty" in added.stdout
    listing = run("list")
    assert "empty.txt" in listing.stdout and "failed" in listing.stdout
    assert (michi_home / "data" / "michi.sqlite3").exists(), "MICHI_HOME decides where the database lives"
