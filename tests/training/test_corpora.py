"""Real-corpus readers, webrtcvad, and cutting long recordings into aligned utterances."""

import random

import numpy as np
import soundfile as sf

from michi_core.model.config import CodecConfig
from training.data.corpora import ingest, iter_folder, iter_libritts
from training.data.manifest import Manifest
from training.data.vad import segments_at_pauses, speech_frames

CODEC = CodecConfig()
SENTENCES = [
    "The ferry to the island leaves every morning.",
    "Bring a warm coat because the wind is strong.",
    "My brother bought three loaves of bread yesterday.",
    "Please call me when you arrive at the station.",
    "The museum is closed on Mondays and Tuesdays.",
    "We planted tomatoes and beans in the garden.",
]


def _speech(voice_bank, text: str, seed: int = 0) -> np.ndarray:
    return voice_bank.speak("espeak:en-us+m3", text, random.Random(seed)).audio


def test_libritts_layout_gives_speakers_splits_and_written_text(tmp_path, voice_bank):
    root = tmp_path / "LibriTTS_R"
    layout = {"train-clean-100": "103", "dev-clean": "84", "test-clean": "121"}
    for k, (subset, speaker) in enumerate(layout.items()):
        folder = root / subset / speaker / "1241"
        folder.mkdir(parents=True)
        stem = f"{speaker}_1241_000000_00000{k}"
        sf.write(folder / f"{stem}.wav", _speech(voice_bank, SENTENCES[k]), CODEC.sample_rate)
        (folder / f"{stem}.original.txt").write_text(SENTENCES[k])
        (folder / f"{stem}.normalized.txt").write_text(SENTENCES[k].lower())
    found = {u.speaker: u for u in iter_libritts(root)}
    assert {s: u.corpus_split for s, u in found.items()} == {
        "libritts:103": "train", "libritts:84": "valid", "libritts:121": "test"}
    assert found["libritts:103"].text == SENTENCES[0], "the written form (.original.txt) is the label"

    corpus = tmp_path / "corpus"
    summary = ingest(corpus, iter_libritts(root))
    assert summary["utterances"] == 3
    rows = {r["speaker"]: r for r in Manifest(corpus).rows()}
    assert rows["libritts:84"]["split"] == "valid" and rows["libritts:121"]["split"] == "test"
    assert rows["libritts:103"]["path"] == str(found["libritts:103"].audio_path.resolve()), \
        "24 kHz mono files are used where they are, not copied"
    assert ingest(corpus, iter_libritts(root))["skipped"] == 3, "a second ingest adds nothing"


def test_vad_marks_speech_frames():
    rate, frame = CODEC.sample_rate, CODEC.frame_size
    t = np.arange(rate) / rate
    voiced = 0.3 * np.sign(np.sin(2 * np.pi * 140 * t)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    audio = np.concatenate([np.zeros(10 * frame), voiced, np.zeros(10 * frame)]).astype(np.float32)
    flags = speech_frames(audio, CODEC)
    assert len(flags) == -(-len(audio) // frame)
    assert not flags[:9].any() and not flags[-9:].any(), "silence is not speech"
    assert flags[11:20].mean() > 0.8, "a loud buzzy voice-like tone is speech"


def test_segments_are_cut_in_pauses_and_never_too_long():
    speech = np.array([0, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0], bool)
    assert segments_at_pauses(speech, max_frames=40) == [(0, 27)]
    pieces = segments_at_pauses(speech, max_frames=10)
    assert all(b - a <= 10 for a, b in pieces)
    assert pieces[0] == (0, 5) and pieces[1][0] >= 5, "the first cut lands in the first pause"
    assert segments_at_pauses(np.zeros(8, bool), 10) == []


def test_long_recording_is_cut_at_pauses_into_aligned_utterances(tmp_path, voice_bank, tiny_aligner):
    """Six sentences with pauses between them, one transcript: the pieces are whole sentences, each
    within the length limit, each with its own words and timings."""
    gap = np.zeros(int(0.9 * CODEC.sample_rate), np.float32)
    audio = np.concatenate([part for k, sentence in enumerate(SENTENCES)
                            for part in (_speech(voice_bank, sentence, k), gap)])
    folder = tmp_path / "recordings" / "alice"
    folder.mkdir(parents=True)
    sf.write(folder / "session.flac", audio, CODEC.sample_rate)
    (folder / "session.txt").write_text("\n".join(SENTENCES))
    utterances = list(iter_folder(tmp_path / "recordings"))
    assert [(u.speaker, u.source) for u in utterances] == [("folder:alice", "folder")]

    corpus = tmp_path / "corpus"
    max_seconds = 7.0
    summary = ingest(corpus, iter(utterances), max_seconds=max_seconds, whisper="tiny.en")
    assert summary["long_recordings"] == 1 and summary["segments"] >= 3
    rows = list(Manifest(corpus).rows())
    for row in rows:
        assert row["duration"] <= max_seconds + 1e-6
        assert sf.info(str(Manifest(corpus).resolve(row["path"]))).samplerate == CODEC.sample_rate
        words = row["alignment"]
        assert [w for w, _, _ in words] == row["text"].split()
        assert all(0 <= s <= row["duration"] for _, s, _ in words)
    kept = [r for r in rows if r["filter_reason"] is None]
    assert len(kept) >= len(rows) - 1, "espeak read its transcript; ASR should mostly agree"
    texts = [r["text"] for r in rows]
    assert " ".join(texts) == " ".join(SENTENCES), "every word lands in exactly one piece, in order"
    boundaries = {len(" ".join(SENTENCES[:k]).split()) for k in range(len(SENTENCES) + 1)}
    position = 0
    for text in texts:
        assert position in boundaries, f"piece {text!r} starts mid-sentence"
        position += len(text.split())
