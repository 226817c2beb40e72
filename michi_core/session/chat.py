"""`michi chat`: a headless conversation from a WAV file, frame by frame, exactly as the app runs it.

The user's file is streamed through the session one 80 ms frame at a time (the model hears the
user while it speaks); the model's audio is written out, with a JSON transcript of both sides,
frame times and per-step timings. This is how the model is evaluated without a sound card.

Memory does not grow with the length of the call: the input is read from the file in blocks
(resampled as a stream), each output frame is written to the file as it comes, and the
transcript's per-frame records are spooled to temporary files until the end. `michi codec` reads
and writes its files the same way (`AudioFrames`, `AudioFileWriter`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from array import array
from collections.abc import Iterator
from contextlib import closing
from dataclasses import asdict
from pathlib import Path
from typing import Self

import numpy as np
import soundfile as sf
import soxr
import torch

from michi_core.audio import AudioFileError
from michi_core.model.model import MichiModel
from michi_core.session.engine import DuplexSession, SamplingSettings, StepResult
from michi_core.session.hearing import Hearing, HearingSettings

log = logging.getLogger(__name__)

READ_BLOCK_SECONDS = 4.0  # input read and resampled this much at a time


CHAT_MAX_BACKLOG_S = 10.0  # audio the recognizer may fall behind a file-driven chat before feed() waits

def check_output(path: str | Path, audio: bool = True) -> Path:
    """Refuse an output path that would fail only after the work is done: a folder, a format
    soundfile cannot write, a folder that cannot be created or written."""
    path = Path(path)
    if path.is_dir() or str(path).endswith(os.sep):
        raise AudioFileError(f"{path}: is a folder; give a file name (e.g. {path / 'reply.wav'})")
    if audio and path.suffix[1:].upper() not in sf.available_formats():
        raise AudioFileError(f"{path}: cannot write {path.suffix or 'extension-less'} audio; use .wav, .flac or .ogg")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise AudioFileError(f"{path}: cannot create its folder ({error.strerror})") from error
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise AudioFileError(f"{path}: not writable (check the folder's permissions)")
    return path


class AudioFrames:
    """An audio file (any rate, mono or stereo) as frames of `frame_size` samples at
    `sample_rate`, read block by block: memory is the same for a second or an hour. The file is
    checked when this is made (before any work); the last frame is zero-padded."""

    def __init__(self, path: str | Path, sample_rate: int, frame_size: int):
        self.path = Path(path)
        self.sample_rate, self.frame_size = sample_rate, frame_size
        if not self.path.is_file():
            raise AudioFileError(f"{self.path}: no such audio file")
        try:
            info = sf.info(str(self.path))
        except (sf.LibsndfileError, RuntimeError) as error:
            raise AudioFileError(f"{self.path}: not a readable audio file ({error})") from error
        if info.frames == 0:
            raise AudioFileError(f"{self.path}: the file holds no audio")
        self.frames_read = 0  # frames handed out so far

    def __iter__(self) -> Iterator[np.ndarray]:
        with sf.SoundFile(str(self.path)) as file:
            rate = file.samplerate
            resampler = None if rate == self.sample_rate else soxr.ResampleStream(
                rate, self.sample_rate, 1, dtype="float32", quality="HQ")
            pending = np.zeros(0, np.float32)
            block = max(1, int(READ_BLOCK_SECONDS * rate))
            for samples in file.blocks(blocksize=block, dtype="float32", always_2d=True):
                mono = samples.mean(axis=1, dtype=np.float32)
                if not np.isfinite(mono).all():
                    raise AudioFileError(f"{self.path}: the audio holds NaN or infinite samples")
                if resampler is not None:
                    mono = resampler.resample_chunk(mono)
                pending = np.concatenate([pending, mono])
                yield from self._whole_frames(pending)
                pending = pending[len(pending) // self.frame_size * self.frame_size:]
            if resampler is not None:
                pending = np.concatenate([pending, resampler.resample_chunk(np.zeros(0, np.float32), last=True)])
            if len(pending) % self.frame_size:
                pending = np.pad(pending, (0, -len(pending) % self.frame_size))
            yield from self._whole_frames(pending)

    def _whole_frames(self, samples: np.ndarray) -> Iterator[np.ndarray]:
        for start in range(0, len(samples) - self.frame_size + 1, self.frame_size):
            self.frames_read += 1
            yield samples[start : start + self.frame_size].astype(np.float32, copy=True)


class AudioFileWriter:
    """Mono audio written to a file as it comes (16-bit), under a hidden name renamed into place
    when closed without error: a failed or killed run never leaves a truncated file."""

    def __init__(self, path: str | Path, sample_rate: int):
        self.path = check_output(path)
        self.partial = self.path.with_name(f".{self.path.name}.partial")
        self.file = sf.SoundFile(str(self.partial), "w", samplerate=sample_rate, channels=1,
                                 format=self.path.suffix[1:].upper(), subtype="PCM_16")
        self.samples = 0

    def write(self, wave: np.ndarray) -> None:
        self.file.write(np.clip(np.asarray(wave, dtype=np.float32), -1.0, 1.0))
        self.samples += len(wave)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, *_) -> None:
        self.file.close()
        if exc_type is None:
            os.replace(self.partial, self.path)
        else:
            self.partial.unlink(missing_ok=True)


def run_chat(model: MichiModel, input_path: str, output_path: str, system: str | None = None,
             say: str | None = None, voice_path: str | None = None, transcript_path: str | None = None,
             seed: int | None = None, settings: SamplingSettings | None = None, device: str = "cpu",
             dtype: str | torch.dtype | None = torch.float32, hearing: HearingSettings | None = None) -> dict:
    """Stream the input file through a session, writing the model's audio (and the transcript).

    `hearing`: the recognizer that turns the user's speech into the words the model reads (and the
    transcript's user side); None leaves the user's text to the listen head alone.

    Returns the transcript's summary: the frame counts, both sides' text and the step-time
    percentiles; the per-frame records ("model", "user", "steps") are in the transcript file.
    """
    sr = model.config.codec.sample_rate
    fs = model.config.codec.frame_size
    check_output(output_path)
    if transcript_path:
        check_output(transcript_path, audio=False)
    user = AudioFrames(input_path, sr, fs)
    settings = settings or SamplingSettings()
    settings.seed = seed if seed is not None else settings.seed
    session = DuplexSession(model, settings, device=device, dtype=dtype)
    if hearing is not None:
        if hearing.max_backlog_s is None:  # a file steps faster than real time: bound the unheard audio
            hearing = dataclasses.replace(hearing, max_backlog_s=CHAT_MAX_BACKLOG_S)
        session.attach_hearing(Hearing(hearing, sample_rate=sr, frame_size=fs))
    if voice_path:  # a recording's path, or a stored voice's id or name (`michi voices list`)
        from michi_core.stores.voices import (
            resolve_voice,  # voices builds on this module: import it only when used
        )

        session.set_voice(resolve_voice(model, voice_path))
    if system:
        session.prefill_text(system)
    if say:
        session.say(say)

    frame_s = fs / sr
    total_ms = array("f")  # 4 bytes a frame: the percentiles need every step
    model_text, user_text = [], []
    with (AudioFileWriter(output_path, sr) as writer, _Spool(transcript_path is not None) as spool,
          closing(session)):
        for step in session.run(user):
            writer.write(step.audio)
            total_ms.append(step.timings.total_ms)
            if step.model_text:
                model_text.append(step.model_text)
            if step.user_text:
                user_text.append(step.user_text)
            spool.add(step, frame_s)
        timings = np.frombuffer(total_ms, dtype=np.float32)
        transcript = {
            "input": str(input_path),
            "sample_rate": sr,
            "frame_seconds": frame_s,
            "input_frames": user.frames_read,
            "output_frames": len(timings),
            "model_text": "".join(model_text),
            "user_text": "".join(user_text),
            "step_ms_p50": float(np.median(timings)),
            "step_ms_p95": float(np.percentile(timings, 95)),
        }
        if transcript_path:
            spool.write_transcript(Path(transcript_path), transcript)
    return transcript


class _Spool:
    """The transcript's per-frame records, one JSON line each in temporary files, so a long
    call's transcript is written without holding it."""

    NAMES = ("model", "user", "steps")

    def __init__(self, enabled: bool):
        # Closed by __exit__ (the spool is a context manager).
        self.files = {name: tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
                      for name in self.NAMES} if enabled else {}

    def add(self, step: StepResult, frame_s: float) -> None:
        if not self.files:
            return
        if step.model_text:
            self._line("model", {"frame": step.frame_index, "time": step.frame_index * frame_s,
                                 "text": step.model_text})
        if step.user_text:
            # With a recognizer, each word also says when it was spoken (audio seconds) and whether
            # it came from two agreeing passes or the utterance's last one.
            words = [{"text": w.text, "start": round(w.start_s, 3), "end": round(w.end_s, 3), "final": w.final}
                     for w in step.user_words]
            self._line("user", {"frame": step.frame_index, "time": step.frame_index * frame_s,
                                "text": step.user_text, **({"words": words} if words else {})})
        self._line("steps", {"frame": step.frame_index, **asdict(step.timings)})

    def _line(self, name: str, record: dict) -> None:
        self.files[name].write(json.dumps(record) + "\n")

    def write_transcript(self, path: Path, summary: dict) -> None:
        """`summary` plus the spooled lists, as one JSON object (written, then renamed into place)."""
        partial = path.with_name(f".{path.name}.partial")
        head = json.dumps(summary, indent=2)
        with open(partial, "w", encoding="utf-8") as out:
            out.write(head[: head.rindex("\n}")])
            for name in self.NAMES:
                out.write(f',\n  "{name}": [')
                spooled = self.files[name]
                spooled.seek(0)
                out.writelines(("," if number else "") + "\n    " + line.rstrip("\n")
                               for number, line in enumerate(spooled))
                out.write("\n  ]")
            out.write("\n}\n")
        os.replace(partial, path)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_) -> None:
        for file in self.files.values():
            file.close()
