"""`michi-train data synth`: a synthesized speech corpus of the requested length.

Job i is a pure function of (seed, i): which split, which speaker, which text, which prosody. A
build walks i = 0, 1, 2, ..., skips ids the manifest already holds, and stops handing out jobs
once the audio written plus the audio in flight reaches the target. A killed build therefore
resumes exactly where it stopped (holes included), and its rows are what a clean build would
have written.

The split comes first (a fixed schedule: 5% valid, 5% test), then a speaker of that split, then a
text whose hash falls in that split: the corpus is speaker- and text-disjoint by construction.
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

from michi_core.audio import save_audio
from michi_core.model.config import CodecConfig

from .manifest import Manifest, scheduled_split, speaker_split, text_keys, text_split
from .parallel import run_parallel
from .textgen import TextGenerator, read_text_file
from .voices import VoiceBank, parse_voices

log = logging.getLogger(__name__)

CHARS_PER_SECOND = 14.0  # rough speaking rate, to estimate audio still in flight
MAX_TEXT_DRAWS = 500  # texts drawn to find one whose hash falls in the job's split


@dataclass
class SynthJob:
    index: int
    item_id: str
    split: str
    speaker: str
    text: str
    audio_path: Path  # absolute, where the worker writes
    relative_path: str  # as stored in the manifest


class SynthPlan:
    """Deterministic job i for a seed, a speaker list and optional text files."""

    def __init__(self, corpus_dir: Path, speakers: list[str], seed: int = 0, piper_share: float = 0.5,
                 text_files: list[str | Path] = ()):
        self.corpus_dir = corpus_dir
        self.seed = seed
        self.piper_share = piper_share
        self.speakers_by_split = {split: [s for s in speakers if speaker_split(s) == split]
                                  for split in ("train", "valid", "test")}
        assert self.speakers_by_split["train"], (
            f"no training speaker among {speakers}: add 'piper' or espeak voices outside the held-out "
            f"variants")
        for split in ("valid", "test"):
            if not self.speakers_by_split[split]:
                log.warning("no %s speaker among the chosen voices: no %s split", split, split)
        sentences = [s for path in text_files for s in read_text_file(path)]
        self.text = TextGenerator(random.Random(seed), file_sentences=sentences)

    def job(self, index: int) -> SynthJob:
        rng = random.Random(f"synth:{self.seed}:{index}")
        self.text.rng = rng
        split = scheduled_split(index)
        if not self.speakers_by_split[split]:
            split = "train"
        speakers = self.speakers_by_split[split]
        piper = [s for s in speakers if s.startswith("piper:")]
        espeak = [s for s in speakers if not s.startswith("piper:")]
        speaker = rng.choice(piper if piper and (not espeak or rng.random() < self.piper_share) else espeak)
        text = self.text.sentence()
        for _ in range(MAX_TEXT_DRAWS):
            if text_split(text) == split:
                break
            text = self.text.sentence()
        item_id = f"synth-s{self.seed}-{index:07d}"
        relative = f"audio/synth/s{self.seed}/{index // 1000:04d}/{item_id}.flac"
        return SynthJob(index, item_id, split, speaker, text, self.corpus_dir / relative, relative)


# -- worker side ----------------------------------------------------------------------------------------
_bank: VoiceBank | None = None


def _init_worker(sample_rate: int, threads: int) -> None:
    global _bank
    _bank = VoiceBank(sample_rate, threads=threads)


def _synthesize(job: SynthJob) -> dict:
    assert _bank is not None, "worker not initialised"
    speech = _bank.speak(job.speaker, job.text, random.Random(f"prosody:{job.item_id}"))
    save_audio(job.audio_path, speech.audio, _bank.sample_rate)
    return {
        "id": job.item_id, "kind": "utterance", "source": "synth", "split": job.split,
        "speaker": job.speaker, "path": job.relative_path, "text": job.text,
        "text_keys": text_keys([job.text]), "duration": len(speech.audio) / _bank.sample_rate,
        "sample_rate": _bank.sample_rate, "params": speech.params,
        "synth_words": [[w.text, round(w.start, 4), round(w.end, 4)] for w in speech.words]
        if speech.words is not None else None,
    }


# -- parent side ----------------------------------------------------------------------------------------
def build_synth(corpus_dir: str | Path, hours: float, voices: list[str] | None = None, workers: int = 1,
                seed: int = 0, piper_share: float = 0.5, text_files: list[str | Path] = (),
                codec: CodecConfig | None = None, progress: bool = False) -> dict:
    """Synthesize until the corpus holds `hours` of synth audio for this seed; returns a summary."""
    from tqdm import tqdm

    codec = codec or CodecConfig()
    corpus_dir = Path(corpus_dir)
    manifest = Manifest(corpus_dir)
    plan = SynthPlan(corpus_dir, parse_voices(voices), seed, piper_share, text_files)
    prefix = f"synth-s{seed}-%"
    done_ids = manifest.ids("id like ?", [prefix])
    target = hours * 3600
    written = manifest.total_duration("id like ?", [prefix])
    state = {"in_flight_s": 0.0, "new_s": 0.0, "new_rows": 0, "errors": 0, "next_index": 0}
    bar = tqdm(total=round(target), initial=min(round(written), round(target)), unit="s audio",
               disable=not progress, desc="synth")

    def next_job() -> SynthJob | None:
        """The next job not yet in the manifest, unless the audio written and in flight suffices."""
        if written + state["new_s"] + state["in_flight_s"] >= target:
            return None
        while f"synth-s{seed}-{state['next_index']:07d}" in done_ids:
            state["next_index"] += 1
        job = plan.job(state["next_index"])
        state["next_index"] += 1
        state["in_flight_s"] += len(job.text) / CHARS_PER_SECOND
        return job

    def on_result(job: SynthJob, result) -> None:
        state["in_flight_s"] -= len(job.text) / CHARS_PER_SECOND
        if isinstance(result, Exception):
            log.warning("synthesis failed for %s (%s, %r): %s", job.item_id, job.speaker, job.text, result)
            manifest.add({"id": job.item_id, "kind": "utterance", "source": "synth", "split": job.split,
                          "speaker": job.speaker, "text": job.text, "filter_reason": "synth_error"})
            state["errors"] += 1
            if state["errors"] > 20 and state["errors"] > state["new_rows"]:
                raise RuntimeError("most syntheses fail; see the warnings above")
            return
        manifest.add(result)  # the audio file exists: the worker renamed it into place
        state["new_s"] += result["duration"]
        state["new_rows"] += 1
        bar.update(min(round(written + state["new_s"]), round(target)) - bar.n)

    started = time.perf_counter()
    threads = max(1, (os.cpu_count() or 1) // workers)
    run_parallel(next_job, _synthesize, workers=workers, initializer=_init_worker,
                 initargs=(codec.sample_rate, threads), on_result=on_result)
    bar.close()
    wall = time.perf_counter() - started
    dropped = manifest.enforce_disjoint_texts()
    summary = {"new_rows": state["new_rows"], "new_hours": state["new_s"] / 3600,
               "total_hours": (written + state["new_s"]) / 3600, "errors": state["errors"],
               "wall_s": wall,
               "audio_hours_per_wall_minute": state["new_s"] / 3600 / (wall / 60) if wall else 0.0,
               "split_conflicts_dropped": dropped}
    log.info("synth: %s", summary)
    return summary
