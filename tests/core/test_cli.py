"""The `michi` commands that need no GUI: info, bench, chat."""

import json
import os
import struct

import numpy as np
import pytest
import soundfile as sf

from app.cli import main


def test_info_prints_the_full_size_breakdown_within_the_target(capsys):
    assert main(["info", "--preset", "michi-530m"]) == 0
    out = capsys.readouterr().out
    total_line = [line for line in out.splitlines() if line.strip().startswith("total")][0]
    total = int(total_line.split()[1].replace(",", ""))
    assert 515e6 <= total <= 545e6, total_line
    for part in ("listen head", "flow speak head", "codec decoder", "transformer layers"):
        assert part in out


def test_bench_writes_json_with_the_machine_and_every_measure(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--preset", "tiny", "--frames", "8", "--json", str(out), "--variants", "fp32,int8"]) == 0
    report = json.loads(out.read_text())
    assert report["machine"]["cpu_count"] >= 1 and report["machine"]["torch"]
    fp32, int8 = report["results"]
    for r in (fp32, int8):
        assert r["step_ms"]["total_ms"]["p95"] > 0 and r["realtime_factor_p95"] > 0
        assert r["ttfa_say_ms"] > 0 and r["ttfa_prompt_ms"] > 0 and r["peak_memory_mb"] > 0
        assert set(r["step_ms"]) == {"listen_ms", "backbone_ms", "flow_ms", "codec_ms", "total_ms"}
    assert 0 <= int8["drift_vs_fp32"]["argmax_agreement"] <= 1
    assert "real-time factor" in capsys.readouterr().out


def _wav(path, seconds, rate, channels):
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t)
    sf.write(str(path), np.stack([tone] * channels, axis=1) if channels > 1 else tone, rate)


def test_chat_streams_any_wav_and_writes_audio_and_a_transcript(tmp_path):
    _wav(tmp_path / "user.wav", 1.0, 16_000, 2)  # stereo, 16 kHz: resampled and downmixed
    out, transcript = tmp_path / "reply.wav", tmp_path / "t.json"
    assert main(["chat", "--preset", "tiny", "--input", str(tmp_path / "user.wav"), "--output", str(out),
                 "--say", "hi there", "--transcript", str(transcript), "--seed", "0", "--system", "Be brief."]) == 0
    reply, rate = sf.read(str(out))
    assert rate == 24_000 and reply.ndim == 1
    data = json.loads(transcript.read_text())
    assert data["input_frames"] == 13  # 1 s at 12.5 frames/s, rounded up to whole frames
    assert len(reply) == data["output_frames"] * 1920 >= 13 * 1920
    assert data["model_text"].startswith("hi there")  # then the untrained model babbles on
    assert [w["frame"] for w in data["model"]] == sorted(w["frame"] for w in data["model"])
    assert len(data["steps"]) == data["output_frames"] and data["steps"][0]["total_ms"] > 0


def test_python_m_michi_core_cli_runs_the_same_commands_without_qt(capsys):
    from michi_core.cli import main as core_main

    assert core_main(["voices", "list"]) == 0
    assert "no voices yet" in capsys.readouterr().out


def _fails_clearly(capsys, argv, *expected, code=1):
    """The command exits non-zero with one clear message on stderr, never a traceback."""
    if code == 2:  # argparse refuses the arguments themselves
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    else:
        assert main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for words in expected:
        assert words in err, err
    return err


def _checkpoint(tmp_path, config, weights: bytes | None = None, name="ckpt"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    if weights is not None:
        (folder / "model.safetensors").write_bytes(weights)
    return folder


def test_former_tracebacks_are_clear_messages(tmp_path, capsys):
    user = tmp_path / "user.wav"
    _wav(user, 0.5, 24_000, 1)
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00not really a wav")
    huge = 2**64
    chat = ["chat", "--preset", "tiny", "--input", str(user)]

    _fails_clearly(capsys, ["chat", "--preset", "tiny", "--input", str(bad), "--output", str(tmp_path / "o.wav")],
                   "not a readable audio file")
    assert not (tmp_path / "o.wav").exists()
    (tmp_path / "out").mkdir()
    _fails_clearly(capsys, [*chat, "--output", str(tmp_path / "out")], "is a folder")
    _fails_clearly(capsys, [*chat, "--output", str(tmp_path / "reply.txt")], "cannot write .txt audio")
    _fails_clearly(capsys, ["codec", "--input", str(user), "--output", str(tmp_path / "out")], "is a folder")
    _fails_clearly(capsys, [*chat, "--output", str(tmp_path / "o.wav"), "--transcript", str(tmp_path / "out")],
                   "is a folder")
    for voice in ("²", str(huge)):
        _fails_clearly(capsys, [*chat, "--output", str(tmp_path / "o.wav"), "--voice", voice],
                       "neither an audio file nor a stored voice")
    for argv in (["docs", "remove", str(huge)], ["docs", "enable", str(2**63)], ["voices", "remove", str(huge)],
                 ["docs", "disable", "²"]):
        _fails_clearly(capsys, argv, "is not an id", code=2)

    junk = _checkpoint(tmp_path, {"format_version": 1}, os.urandom(4096), "junk")
    huge_header = _checkpoint(tmp_path, {"format_version": 1}, struct.pack("<Q", 2**60) + b"{}", "huge")
    listed = _checkpoint(tmp_path, [1, 2, 3], b"", "list")
    pickled = _checkpoint(tmp_path, {"format_version": 1}, None, "pickled")
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04 not loaded")
    for folder, words in ((junk, "not a usable safetensors file"), (huge_header, "not a usable safetensors file"),
                          (listed, "must hold a JSON object"), (pickled, "never loads")):
        _fails_clearly(capsys, ["chat", "--checkpoint", str(folder), "--input", str(user),
                                "--output", str(tmp_path / "o.wav")], words)
        _fails_clearly(capsys, ["codec", "--checkpoint", str(folder), "--input", str(user),
                                "--output", str(tmp_path / "o.wav")], words)
    assert not (tmp_path / "o.wav").exists()


def test_outputs_are_checked_before_any_frame_is_computed(tmp_path, capsys, monkeypatch):
    import michi_core.model.model as model_module

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(model_module, "load_model", no_model)
    user = tmp_path / "user.wav"
    _wav(user, 0.5, 24_000, 1)
    _fails_clearly(capsys, ["chat", "--preset", "tiny", "--input", str(user), "--output", str(tmp_path)], "is a folder")


def test_a_checkpoint_never_downloads_nor_unpickles(tmp_path, monkeypatch):
    import socket

    import torch

    from michi_core.model.config import CheckpointError, tiny
    from michi_core.model.model import MichiModel

    def no_network(*args, **kwargs):
        raise AssertionError("a checkpoint made Michi open a network connection")

    def no_pickle(*args, **kwargs):
        raise AssertionError("a checkpoint made Michi unpickle a file")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # refused by Michi itself, not by the test set-up
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(torch, "load", no_pickle)
    config = tiny()
    torch.manual_seed(0)
    folder = tmp_path / "ckpt"
    MichiModel(config).save_pretrained(folder, include_backbone=False)  # heads only: the backbone comes from its source
    saved = json.loads((folder / "config.json").read_text())
    saved["backbone"].update(source="pretrained", name_or_path="HuggingFaceTB/SmolLM-360M")
    (folder / "config.json").write_text(json.dumps(saved))
    with pytest.raises(CheckpointError, match="never makes Michi download"):
        MichiModel.from_pretrained(folder)

    backbone = tmp_path / "backbone"
    backbone.mkdir()
    (backbone / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (backbone / "pytorch_model.bin").write_bytes(b"\x80\x04 a pickle")
    saved["backbone"]["name_or_path"] = str(backbone)
    (folder / "config.json").write_text(json.dumps(saved))
    with pytest.raises(CheckpointError, match="never loads pickled"):
        MichiModel.from_pretrained(folder)


def test_control_characters_never_reach_the_terminal(tmp_path, capsys):
    from michi_core.stores.voices import VoiceStore

    hostile = tmp_path / "evil\x1b[2J\x1b]0;pwned\x07.html"
    hostile.write_text("<html><head><title>Title\x1b[2J\u202eevil</title></head>"
                       "<body><p>The spare key \x1b[31m is under the mat.</p></body></html>")
    main(["docs", "add", str(hostile)])
    main(["docs", "list"])
    main(["docs", "search", "spare key"])
    with VoiceStore() as store:  # an older Michi let any name in; the listing must still be safe
        store.db.execute("INSERT INTO voices (name, transcript, duration_s, source, created_at, sample_rate, "
                         "audio_flac) VALUES (?, ?, 1.0, 'x', '2026-01-01', 24000, x'00')",
                         ["Bob\x1b[2J", "hello\x1b]0;title\x07"])
        store.db.conn.commit()
    main(["voices", "list"])
    captured = capsys.readouterr()
    assert not any(ord(char) < 32 and char != "\n" or 0x7f <= ord(char) < 0xa0 or char == "\u202e"
                   for char in captured.out), repr(captured.out)
    # stderr also carries the libraries' progress bars (\r), but none of the file's characters
    assert not any(char in captured.err for char in "\x1b\x07\u202e"), repr(captured.err)
    assert "Title\\x1b[2J\\u202eevil" in captured.out and "Bob\\x1b[2J" in captured.out


def test_a_damaged_or_read_only_database_is_a_clear_message_and_stays_as_it_was(michi_home, tmp_path, capsys,
                                                                                 monkeypatch):
    from michi_core.stores import database

    monkeypatch.setattr(database, "_checked", {})
    db = michi_home / "data" / "michi.sqlite3"
    db.parent.mkdir(parents=True)
    db.write_bytes(os.urandom(20_000))  # random bytes where the database should be
    before = db.read_bytes()
    note = tmp_path / "note.txt"
    note.write_text("The boiler is serviced every October.")
    for argv in (["docs", "list"], ["voices", "list"], ["docs", "add", str(note)], ["voices", "remove", "1"]):
        err = _fails_clearly(capsys, argv, "is damaged", ".recover")
        assert "\\n" not in err, "a message's own line breaks are kept"
    assert db.read_bytes() == before

    db.unlink()  # the user moved it aside, as the message says (a new process: a new check)
    monkeypatch.setattr(database, "_checked", {})
    assert main(["docs", "add", str(note)]) == 0
    capsys.readouterr()
    real_access = os.access
    monkeypatch.setattr(database.os, "access",  # as a user sees a read-only folder (root ignores the bits)
                        lambda path, mode, **kw: False if mode & os.W_OK else real_access(path, mode, **kw))
    monkeypatch.setattr(database, "_checked", {})
    assert main(["docs", "list"]) == 0 and "note.txt" in capsys.readouterr().out, "reading still works"
    _fails_clearly(capsys, ["docs", "remove", "1"], "read-only")
