"""`michi-train data dialogues`: two-channel conversations for the duplex stage.

Each dialogue is a script (textgen: chit-chat, or a retrieval exchange whose answers come from a
text context) voiced by a user speaker on one channel and the assistant's voice on the other,
then laid out in time the way people talk:

- gaps between turns drawn around 200 ms, sometimes negative (the next speaker starts while the
  last word is still fading: a small overlap);
- backchannels ("mm-hm", "right") from the listener in the middle of a long turn, without the
  speaker stopping;
- interruptions: the user starts a new turn in the middle of a long assistant turn ("Sorry, ...")
  and the assistant stops 0.2-0.45 s later, mid-word if need be; its text stream keeps only the
  words it had started.

Every turn is aligned with Whisper as it is made (packed: all turns of a dialogue in one call);
a turn ASR disagrees with is re-voiced with fresh prosody, and a dialogue whose turns still fail
is recorded as dropped. Timings are exact by construction: we placed the audio.

Channels are written as two mono files: `<id>.user.flac` and `<id>.assistant.flac`.
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from michi_core.audio import save_audio
from michi_core.model.config import CodecConfig

from .align import DEFAULT_MAX_WER, PACK_SECONDS, Aligner, pack_by_duration, whisper_model_dir
from .manifest import Manifest, scheduled_split, speaker_split, text_keys
from .parallel import run_parallel
from .textgen import BACKCHANNELS, Script, TextGenerator, Turn
from .voices import Speech, VoiceBank, parse_voices

log = logging.getLogger(__name__)

INTERRUPTION_OPENERS = ("Sorry,", "Wait,", "Actually,", "Hang on,", "Sorry to interrupt,")
MIN_INTERRUPTIBLE_S = 2.0  # an assistant turn shorter than this is let finish
MIN_BACKCHANNEL_TURN_S = 2.5  # a turn must be this long to draw a backchannel
REVOICE_ATTEMPTS = 2  # voicings per turn and user voice (espeak misreads the same way each time)
USER_VOICES_TRIED = 2  # the dialogue's user voice, then one more of the same split, before dropping it


@dataclass
class DialogueOptions:
    retrieval_share: float = 0.5  # retrieval exchanges vs chit-chat
    interrupt_prob: float = 0.25  # per long assistant turn followed by a user turn
    backchannel_prob: float = 0.4  # per long turn, the listener says "mm-hm"
    gap_mean_s: float = 0.2
    gap_std_s: float = 0.3
    reaction_s: tuple[float, float] = (0.2, 0.45)  # how long the assistant talks on when talked over
    max_wer: float = DEFAULT_MAX_WER


@dataclass
class DialogueJob:
    index: int
    item_id: str
    split: str
    user_speakers: list[str]  # the user's voice, then alternatives of the same split if ASR fails it
    assistant_speaker: str
    script: Script
    corpus_dir: Path
    audio_stem: str  # relative path without ".<channel>.flac"
    options: DialogueOptions = field(default_factory=DialogueOptions)


class DialoguePlan:
    def __init__(self, corpus_dir: Path, user_speakers: list[str], assistant_speaker: str, seed: int = 0,
                 options: DialogueOptions | None = None):
        self.corpus_dir = corpus_dir
        self.seed = seed
        self.assistant_speaker = assistant_speaker
        self.options = options or DialogueOptions()
        self.users_by_split = {split: [s for s in user_speakers if speaker_split(s) == split]
                               for split in ("train", "valid", "test")}
        assert self.users_by_split["train"], f"no training speaker among the user voices {user_speakers}"
        self.text = TextGenerator(random.Random(seed))

    def job(self, index: int) -> DialogueJob:
        rng = random.Random(f"dialogue:{self.seed}:{index}")
        self.text.rng = rng
        split = scheduled_split(index)
        if not self.users_by_split[split]:
            split = "train"
        candidates = self.users_by_split[split]
        users = rng.sample(candidates, k=min(USER_VOICES_TRIED, len(candidates)))
        script = self.text.script(self.options.retrieval_share)
        item_id = dialogue_id(self.seed, index)
        stem = f"audio/dialogues/s{self.seed}/{index // 1000:04d}/{item_id}"
        return DialogueJob(index, item_id, split, users, self.assistant_speaker, script, self.corpus_dir,
                           stem, self.options)


def dialogue_id(seed: int, index: int) -> str:
    return f"dialogue-s{seed}-{index:06d}"


# -- composing one dialogue ------------------------------------------------------------------------------
@dataclass
class VoicedTurn:
    role: str
    speaker: str
    text: str
    speech: Speech
    words: list[tuple[str, float, float]]  # turn-relative times
    wer: float


def _voice_turns(turns: list[Turn], speakers: dict[str, str], bank: VoiceBank, aligner: Aligner,
                 rng: random.Random, max_wer: float) -> list[VoicedTurn] | None:
    """Voice and align every turn; re-voice the ones ASR disagrees with. None if one never passes."""
    voiced: list[VoicedTurn | None] = [None] * len(turns)
    pending = list(range(len(turns)))
    for _ in range(REVOICE_ATTEMPTS):
        speeches = {k: bank.speak(speakers[turns[k].role], turns[k].text, rng) for k in pending}
        durations = [len(speeches[k].audio) / bank.sample_rate for k in pending]
        still_failing = []
        for pack in pack_by_duration(pending, durations, PACK_SECONDS):
            clips = [(speeches[k].audio, turns[k].text) for k in pack]
            results = aligner.align_packed(clips, bank.sample_rate)
            for k, result in zip(pack, results):
                if result.wer <= max_wer:
                    voiced[k] = VoicedTurn(turns[k].role, speakers[turns[k].role], turns[k].text, speeches[k],
                                           result.words, result.wer)
                else:
                    log.debug("%s said %r, ASR heard %r (WER %.2f)", speakers[turns[k].role], turns[k].text,
                              result.recognized, result.wer)
                    still_failing.append(k)
        pending = still_failing
        if not pending:
            return [turn for turn in voiced if turn is not None]  # all of them
    return None


def _backchannel(role: str, speaker: str, bank: VoiceBank, rng: random.Random) -> VoicedTurn:
    text = rng.choice(BACKCHANNELS)
    speech = bank.speak(speaker, text, rng)
    duration = len(speech.audio) / bank.sample_rate
    words = text.split()
    # too short and too hummed for ASR: spread the words over the (trimmed) audio instead
    step = duration / len(words)
    return VoicedTurn(role, speaker, text, speech,
                      [(w, round(k * step, 3), round((k + 1) * step, 3)) for k, w in enumerate(words)], 0.0)


def compose(job: DialogueJob, bank: VoiceBank, aligner: Aligner) -> dict:
    """Voice, align and lay out one dialogue; write its two channels; return its manifest row."""
    opts = job.options
    rng = random.Random(f"compose:{job.item_id}")
    script = job.script
    turns = list(script.turns)
    # decide interruptions up front: the interrupting user turn opens with "Sorry," and the like
    interrupt_next = [False] * len(turns)
    for k in range(len(turns) - 1):
        cuts_in_with_question = turns[k + 1].role == "user" and turns[k + 1].text.endswith("?")
        if turns[k].role == "assistant" and cuts_in_with_question and rng.random() < opts.interrupt_prob:
            interrupt_next[k] = True
            opener = rng.choice(INTERRUPTION_OPENERS)
            turns[k + 1] = Turn("user", f"{opener} {turns[k + 1].text[0].lower()}{turns[k + 1].text[1:]}")
    row = {"id": job.item_id, "kind": "dialogue", "source": "dialogue", "split": job.split,
           "speaker": job.user_speakers[0], "assistant_speaker": job.assistant_speaker,
           "context": script.context,
           "text": "\n".join(f"{t.role.capitalize()}: {t.text}" for t in turns),
           "text_keys": text_keys([script.context] + [t.text for t in turns]), "aligner": aligner.name}
    for user in job.user_speakers:
        speakers = {"user": user, "assistant": job.assistant_speaker}
        voiced = _voice_turns(turns, speakers, bank, aligner, rng, opts.max_wer)
        if voiced is not None:
            row["speaker"] = user
            break
    else:
        return {**row, "filter_reason": "asr_mismatch"}

    rate = bank.sample_rate
    placed: list[dict] = []  # turn records in dialogue time
    previous_duration = 0.0
    for k, turn in enumerate(voiced):
        if k == 0:
            start = rng.uniform(0.3, 1.0)  # the call opens with a short silence
        elif interrupt_next[k - 1] and previous_duration >= MIN_INTERRUPTIBLE_S:
            # the user cuts in mid-turn; the assistant talks on for a reaction time, then stops
            start = placed[-1]["start"] + rng.uniform(0.3, 0.7) * previous_duration
            _cut(placed[-1], start + rng.uniform(*opts.reaction_s), rate)
        else:
            gap = float(np.clip(rng.gauss(opts.gap_mean_s, opts.gap_std_s), -0.4, 1.2))
            start = placed[-1]["end"] + max(gap, -previous_duration / 3)  # overlap at most a third
        placed.append(_placed(turn, start, rate))
        previous_duration = len(turn.speech.audio) / rate
    for record in list(placed):
        listener = "user" if record["role"] == "assistant" else "assistant"
        long_enough = record["end"] - record["start"] >= MIN_BACKCHANNEL_TURN_S
        if long_enough and not record["interrupted"] and rng.random() < opts.backchannel_prob:
            candidate = _placed(_backchannel(listener, speakers[listener], bank, rng),
                                _backchannel_time(record, rng), rate, backchannel=True)
            if not any(other["role"] == listener and other["start"] < candidate["end"] + 0.2
                       and candidate["start"] < other["end"] + 0.2 for other in placed):
                placed.append(candidate)  # never on top of the listener's own speech

    total = max(r["end"] for r in placed) + rng.uniform(0.3, 0.8)
    channels = {"user": np.zeros(int(total * rate) + 1, np.float32),
                "assistant": np.zeros(int(total * rate) + 1, np.float32)}
    for record in placed:
        audio = record.pop("audio")
        begin = int(round(record["start"] * rate))
        channels[record["role"]][begin:begin + len(audio)] += audio
    paths = {role: f"{job.audio_stem}.{role}.flac" for role in channels}
    for role, audio in channels.items():
        save_audio(job.corpus_dir / paths[role], audio, rate)
    placed.sort(key=lambda r: r["start"])
    return {**row, "path": paths["assistant"], "user_path": paths["user"],
            "duration": len(channels["user"]) / rate, "sample_rate": rate, "turns": placed,
            "wer": max(r["wer"] for r in placed),
            "params": {"interruptions": sum(r["interrupted"] for r in placed),
                       "backchannels": sum(r["backchannel"] for r in placed)}}


def _cut(record: dict, at: float, rate: int) -> None:
    """The speaker stops at time `at` (fading out over 40 ms): audio, end and words are cut."""
    keep = int(round((at - record["start"]) * rate))
    if keep >= len(record["audio"]):
        return
    fade = min(keep, int(0.04 * rate))
    audio = record["audio"][:keep].copy()
    audio[keep - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    record["audio"] = audio
    record["end"] = round(at, 3)
    record["interrupted"] = True
    record["words"] = [[w, s, min(e, at)] for w, s, e in record["words"] if s < at]
    record["text"] = " ".join(w for w, _, _ in record["words"])


def _placed(turn: VoicedTurn, start: float, rate: int, backchannel: bool = False) -> dict:
    """A turn record in dialogue time (its audio travels along until the channels are mixed)."""
    return {"role": turn.role, "speaker": turn.speaker, "text": turn.text, "start": round(start, 3),
            "end": round(start + len(turn.speech.audio) / rate, 3), "interrupted": False,
            "backchannel": backchannel, "wer": round(turn.wer, 4), "audio": turn.speech.audio,
            "words": [[w, round(start + s, 3), round(start + e, 3)] for w, s, e in turn.words]}


def _backchannel_time(record: dict, rng: random.Random) -> float:
    """When a listener says "mm-hm": in a pause between two words in the middle of the turn."""
    middle = [w for w in record["words"][1:-1]
              if 0.3 <= (w[2] - record["start"]) / (record["end"] - record["start"]) <= 0.75]
    return (rng.choice(middle)[2] if middle else (record["start"] + record["end"]) / 2) + 0.05


# -- worker / parent --------------------------------------------------------------------------------------
_bank: VoiceBank | None = None
_aligner: Aligner | None = None


def _init_worker(sample_rate: int, whisper: str, threads: int) -> None:
    global _bank, _aligner
    _bank = VoiceBank(sample_rate, threads=threads)
    _aligner = Aligner(whisper, threads=threads)


def _compose(job: DialogueJob) -> dict:
    assert _bank is not None and _aligner is not None, "worker not initialised"
    return compose(job, _bank, _aligner)


def build_dialogues(corpus_dir: str | Path, count: int, user_voices: list[str] | None = None,
                    assistant_voice: str = "piper:joe", workers: int = 1, seed: int = 0,
                    whisper: str = "base", options: DialogueOptions | None = None,
                    codec: CodecConfig | None = None, progress: bool = False) -> dict:
    """Make dialogues until `count` (kept or dropped) exist for this seed; returns a summary."""
    from tqdm import tqdm

    codec = codec or CodecConfig()
    corpus_dir = Path(corpus_dir)
    manifest = Manifest(corpus_dir)
    assistant = parse_voices([assistant_voice])
    assert len(assistant) == 1, f"the assistant has one voice, not {assistant}"
    users = [s for s in parse_voices(user_voices or ["espeak"]) if s != assistant[0]]
    plan = DialoguePlan(corpus_dir, users, assistant[0], seed, options)
    done = manifest.ids("id like ?", [f"dialogue-s{seed}-%"])
    todo = [plan.job(i) for i in range(count) if dialogue_id(seed, i) not in done]
    whisper_model_dir(whisper)
    counts = {"kept": 0, "dropped": 0, "errors": 0, "audio_s": 0.0}
    bar = tqdm(total=count, initial=count - len(todo), unit="dialogue", disable=not progress,
               desc="dialogues")

    def on_result(job: DialogueJob, result) -> None:
        if isinstance(result, Exception):
            log.warning("dialogue %s failed: %s", job.item_id, result)
            manifest.add({"id": job.item_id, "kind": "dialogue", "source": "dialogue", "split": job.split,
                          "speaker": job.user_speakers[0], "filter_reason": "synth_error"})
            counts["errors"] += 1
        else:
            manifest.add(result)
            counts["dropped" if result.get("filter_reason") else "kept"] += 1
            counts["audio_s"] += result.get("duration") or 0.0
        bar.update(1)

    started = time.perf_counter()
    if todo:
        threads = max(1, (os.cpu_count() or 1) // workers)
        run_parallel(todo, _compose, workers=workers, initializer=_init_worker,
                     initargs=(codec.sample_rate, whisper, threads), on_result=on_result)
    bar.close()
    dropped_for_split = manifest.enforce_disjoint_texts()
    summary = {**counts, "wall_s": time.perf_counter() - started,
               "split_conflicts_dropped": dropped_for_split}
    log.info("dialogues: %s", summary)
    return summary
