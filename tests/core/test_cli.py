"""The `michi` commands that need no GUI: info, bench, chat."""

import json

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


def test_chat_refuses_an_unreadable_file_clearly(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00not really a wav")
    with pytest.raises(SystemExit, match="not a readable audio file"):
        main(["chat", "--preset", "tiny", "--input", str(bad), "--output", str(tmp_path / "o.wav")])
    assert not (tmp_path / "o.wav").exists()
