"""Whisper word timings, the mismatch filter, and words -> tokens -> frames."""

import random

import pytest

from michi_core.audio import save_audio
from michi_core.model.config import CodecConfig
from michi_core.model.tokenizer import ByteTokenizer
from training.data.align import align_text, build_alignment, frame_tokens
from training.data.manifest import Manifest

CODEC = CodecConfig()


def test_word_frames_match_the_synthesizers_word_boundaries(voice_bank, base_aligner):
    """espeak reports where it put every word; Whisper base, mapped onto the known text, must put
    each word in the same 80 ms frame, give or take one."""
    text = "Could you set a timer for twenty minutes?"
    speech = voice_bank.speak("espeak:en-us+f2", text, random.Random(0))
    alignment = base_aligner.align(speech.audio, CODEC.sample_rate, text)
    assert alignment.wer <= 0.25, f"Whisper heard {alignment.recognized!r}"
    truth = [int(w.start * CODEC.frame_rate) for w in speech.words]
    found = [int(start * CODEC.frame_rate) for _, start, _ in alignment.words]
    assert [w for w, _, _ in alignment.words] == text.split(), "one timing per written word, in order"
    off = [f - t for f, t in zip(found, truth)]
    assert max(map(abs, off)) <= 1, f"word start frames {found} vs synthesizer {truth} (diff {off})"


def test_filter_drops_a_mismatched_transcript(tmp_path, voice_bank):
    """Two utterances through `build_alignment`; the one labelled with another sentence's text is
    dropped and counted, the correctly labelled one kept."""
    manifest = Manifest(tmp_path)
    utterances = {  # id: (what is said, the label it gets)
        "right": ("Please add three bags of rice to the shopping list.",) * 2,
        "wrong": ("My sister moved to Boston and loves it there.",
                  "The river through Oakhaven is called the Amber."),
    }
    for item_id, (said, label) in utterances.items():
        speech = voice_bank.speak("piper:joe", said, random.Random(1))
        save_audio(tmp_path / f"{item_id}.flac", speech.audio, CODEC.sample_rate)
        manifest.add({"id": item_id, "kind": "utterance", "source": "synth", "split": "train",
                      "speaker": "piper:joe", "path": f"{item_id}.flac", "text": label,
                      "duration": len(speech.audio) / CODEC.sample_rate})
    summary = build_alignment(tmp_path, whisper="tiny.en", workers=1)
    rows = {row["id"]: row for row in manifest.rows()}
    report = {k: (r["filter_reason"], r["wer"], r["asr_text"]) for k, r in rows.items()}
    assert rows["right"]["filter_reason"] is None, f"the right label was dropped: {report}"
    assert rows["wrong"]["filter_reason"] == "asr_mismatch" and rows["wrong"]["wer"] > 0.5, report
    assert (summary["aligned"], summary["dropped"]) == (1, 1), summary
    assert build_alignment(tmp_path, whisper="tiny.en")["aligned"] == 0, "a second run has nothing left to do"


def test_known_words_take_the_times_of_what_asr_heard():
    heard = [("Mr.", 0.0, 0.3), ("Miller", 0.4, 0.8), ("bought", 0.8, 1.1), ("two", 1.1, 1.3),
             ("pounds", 1.3, 1.7), ("at", 1.8, 1.9), ("7.30am.", 1.9, 2.6)]
    alignment = align_text("Mr. Miller bought 2 lbs at 7:30 a.m.", heard)
    assert alignment.wer == 0.0, "spoken forms match: 2 lbs == two pounds, 7:30 a.m. == 7.30am"
    starts = {w: s for w, s, _ in alignment.words}
    assert starts["2"] == 1.1 and starts["lbs"] == 1.3 and starts["7:30"] == 1.9
    assert starts["a.m."] > starts["7:30"], "a word ASR merged into another still gets a later time"
    missed = align_text("Mr. Miller bought flour", [("Mr.", 0.0, 0.3), ("bought", 0.8, 1.1)])
    assert missed.wer == 0.5 and missed.words[1] == ("Miller", 0.3, 0.8), "unheard words are interpolated"


def test_tokens_go_to_the_frame_where_their_word_starts():
    tokenizer = ByteTokenizer()
    rate = CODEC.frame_rate  # 12.5 frames per second
    words = [("hi", 0.0, 0.2), ("you", 0.10, 0.3), ("ok", 1.0, 1.2)]
    slots = frame_tokens(words, tokenizer, rate, num_frames=20, eos_at=[1.6])
    pad = tokenizer.pad_id
    # "hi" -> frames 0,1; " you" (4 bytes) starts at frame 1 but is pushed to frames 2..5;
    # " ok" starts in frame int(1.0 * 12.5) = 12; EOS at frame 20 (1.6 s) -> grows the stream to 21
    expected = [pad] * 21
    expected[0:2] = list(b"hi")
    expected[2:6] = list(b" you")
    expected[12:15] = list(b" ok")
    expected[20] = tokenizer.eos_id
    assert slots.tolist() == expected


def test_whisper_base_is_assembled_once_and_checked(tmp_path):
    from michi_core.model.whisper import check_model_sha, whisper_model_dir
    from michi_core.paths import cache_dir

    base = whisper_model_dir("base")
    assert base.is_relative_to(cache_dir()), "the assembled Whisper base lives in the cache"
    assert (base / "model.bin").stat().st_size == 2 * 72608766, "part1 + part2"
    corrupt = tmp_path / "model.bin"
    corrupt.write_bytes(b"not a model")
    with pytest.raises(RuntimeError, match="SHA-256"):
        check_model_sha(corrupt, "0" * 64)
    with pytest.raises(FileNotFoundError, match="neither"):
        whisper_model_dir(str(tmp_path / "missing"))
