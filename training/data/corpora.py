"""`michi-train data ingest`: real speech corpora into the manifest.

Two layouts:
- LibriTTS / LibriTTS-R: `<root>/<subset>/<speaker>/<chapter>/<speaker>_<chapter>_<n>_<m>.wav`
  with `.original.txt` (as written: what the text stream should say) or `.normalized.txt`.
  Subsets `train-*`, `dev-*`, `test-*` give the split, so their speakers stay disjoint.
- a folder of audio files (wav/flac/ogg/mp3), each with a `.txt` transcript of the same stem;
  the speaker is the file's parent folder name.

Utterances up to `max_seconds` are taken whole (aligned later by `data align`). Longer
recordings are aligned here, once, with Whisper against their transcript, then cut at pauses
found by webrtcvad; each piece gets the transcript words that start inside it, their timings,
and the error rate of just those words.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from michi_core.audio import load_audio, save_audio
from michi_core.model.config import CodecConfig

from .align import DEFAULT_MAX_WER, Aligner, error_rate
from .manifest import Manifest, speaker_split, text_keys
from .vad import segments_at_pauses, speech_frames

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
SUBSET_SPLITS = {"train": "train", "dev": "valid", "test": "test"}


@dataclass
class SourceUtterance:
    item_id: str  # stable id in the manifest ("libritts-103_1241_000000_000001")
    source: str  # "libritts" | "folder"
    audio_path: Path
    text: str
    speaker: str  # "libritts:103", "folder:alice"
    corpus_split: str | None  # the split the corpus itself assigns (LibriTTS subsets), if any


def iter_libritts(root: str | Path) -> Iterator[SourceUtterance]:
    root = Path(root)
    for wav in sorted(root.rglob("*.wav")):
        stem = wav.name[: -len(".wav")]
        candidates = (wav.with_name(f"{stem}.original.txt"), wav.with_name(f"{stem}.normalized.txt"))
        transcript = next((p for p in candidates if p.exists()), None)
        if transcript is None:
            log.warning("no transcript next to %s; skipped", wav)
            continue
        folders = (*wav.relative_to(root).parts[:-1], root.name)
        subset = next((part for part in folders if re.match(r"(train|dev|test)-", part)), None)
        yield SourceUtterance(f"libritts-{stem}", "libritts", wav, transcript.read_text().strip(),
                              f"libritts:{stem.split('_')[0]}",
                              SUBSET_SPLITS[subset.split("-")[0]] if subset else None)


def iter_folder(root: str | Path, speaker: str | None = None) -> Iterator[SourceUtterance]:
    root = Path(root)
    for audio in sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
        transcript = audio.with_suffix(".txt")
        if not transcript.exists():
            log.warning("no transcript %s; skipped", transcript)
            continue
        relative = audio.relative_to(root).with_suffix("").as_posix()
        who = speaker or audio.parent.name or root.name
        yield SourceUtterance(f"folder-{re.sub(r'[^A-Za-z0-9_.-]+', '_', relative)}", "folder", audio,
                              re.sub(r"\s+", " ", transcript.read_text()).strip(), f"folder:{who}", None)


def ingest(corpus_dir: str | Path, utterances: Iterator[SourceUtterance], max_seconds: float = 20.0,
           whisper: str = "base", max_wer: float = DEFAULT_MAX_WER, codec: CodecConfig | None = None,
           progress: bool = False) -> dict:
    """Add every utterance not yet in the manifest; long recordings are aligned and cut here."""
    from tqdm import tqdm

    codec = codec or CodecConfig()
    manifest = Manifest(corpus_dir)
    done = {row["params"]["source_id"] for row in manifest.rows("source in ('libritts', 'folder')")}
    aligner: Aligner | None = None
    counts = {"utterances": 0, "long_recordings": 0, "segments": 0, "segments_dropped": 0, "skipped": 0}
    for utt in tqdm(utterances, unit="file", disable=not progress, desc="ingest"):
        if utt.item_id in done:
            counts["skipped"] += 1
            continue
        split = speaker_split(utt.speaker, utt.corpus_split)
        base = {"kind": "utterance", "source": utt.source, "speaker": utt.speaker, "split": split,
                "sample_rate": codec.sample_rate,
                "params": {"source_id": utt.item_id, "source_file": str(utt.audio_path)}}
        info = sf.info(str(utt.audio_path))
        if info.duration <= max_seconds:
            ready = (info.samplerate, info.channels) == (codec.sample_rate, 1)
            in_place = ready and utt.audio_path.suffix in (".wav", ".flac")
            path = str(utt.audio_path.resolve())
            if not in_place:  # resample once into the corpus; 24 kHz mono files are used where they are
                path = f"audio/{utt.source}/{utt.item_id}.flac"
                audio = load_audio(utt.audio_path, codec.sample_rate)
                save_audio(manifest.resolve(path), audio, codec.sample_rate)
            manifest.add({**base, "id": utt.item_id, "path": path, "text": utt.text,
                          "duration": info.duration, "text_keys": text_keys([utt.text])})
            counts["utterances"] += 1
            continue
        aligner = aligner or Aligner(whisper)
        rows = _cut_long_recording(utt, load_audio(utt.audio_path, codec.sample_rate), aligner, codec,
                                   max_seconds, max_wer)
        for row in rows:  # audio first, then the row: a killed ingest re-does this file, nothing worse
            audio = row.pop("audio")
            save_audio(manifest.resolve(row["path"]), audio, codec.sample_rate)
        manifest.add_many([{**base, **row} for row in rows])  # all pieces of a recording, or none
        counts["long_recordings"] += 1
        counts["segments"] += len(rows)
        counts["segments_dropped"] += sum(1 for row in rows if row["filter_reason"])
    counts["split_conflicts_dropped"] = manifest.enforce_disjoint_texts()
    log.info("ingest: %s", counts)
    return counts


def _cut_long_recording(utt: SourceUtterance, audio: np.ndarray, aligner: Aligner, codec: CodecConfig,
                        max_seconds: float, max_wer: float) -> list[dict]:
    """One long recording -> rows (with "audio") for its pause-delimited pieces, already aligned."""
    alignment = aligner.align(audio, codec.sample_rate, utt.text)
    frames = segments_at_pauses(speech_frames(audio, codec), max_frames=int(max_seconds * codec.frame_rate))
    rows = []
    for k, (first, last) in enumerate(frames):
        start, end = first * codec.frame_size / codec.sample_rate, last * codec.frame_size / codec.sample_rate
        inside = [i for i, (_, word_start, _) in enumerate(alignment.words) if start <= word_start < end]
        if not inside:
            continue  # noise or speech the transcript does not cover
        words = [(w, round(s - start, 3), round(min(e, end) - start, 3))
                 for w, s, e in (alignment.words[i] for i in inside)]
        wer = error_rate([alignment.errors[i] for i in inside], [alignment.spoken[i] for i in inside])
        text = " ".join(w for w, _, _ in words)
        item_id = f"{utt.item_id}-{k:03d}"
        rows.append({"id": item_id, "path": f"audio/{utt.source}/{item_id}.flac", "text": text,
                     "text_keys": text_keys([text]), "duration": end - start,
                     "audio": audio[first * codec.frame_size:last * codec.frame_size],
                     "alignment": [list(w) for w in words], "wer": round(wer, 4), "aligner": aligner.name,
                     "filter_reason": "asr_mismatch" if wer > max_wer else None})
    return rows
