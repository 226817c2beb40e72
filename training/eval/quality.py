"""Signal quality of speech: STOI, wideband PESQ and DNSMOS, all at 16 kHz.

- STOI (pystoi): intelligibility of a degraded clip against its clean reference, 0..1.
- PESQ (pesq, ITU-T P.862.2 wideband): perceptual quality against the reference, -0.5..4.5.
- DNSMOS (speechmos, Microsoft's ONNX models): reference-free MOS estimates, 1..5: overall,
  signal, background, and the P.808 model's.

Each needs its own package. One that cannot be imported here is named in `unavailable` with the
reason and its score is None: a missing metric is never replaced by a guess.
"""

from __future__ import annotations

import importlib
import logging

import numpy as np

from michi_core.audio import resample

log = logging.getLogger(__name__)

QUALITY_RATE = 16_000  # Hz: PESQ wideband and DNSMOS are defined at 16 kHz
DNSMOS_KEYS = {"ovrl_mos": "ovrl", "sig_mos": "sig", "bak_mos": "bak", "p808_mos": "p808"}


def import_optional(name: str) -> tuple[object | None, str | None]:
    """(module, None), or (None, why it cannot be used): a broken native library fails with more
    than ImportError, so every exception counts."""
    try:
        return importlib.import_module(name), None
    except Exception as error:  # noqa: BLE001 - the reason goes into the report
        return None, f"`import {name}` failed: {type(error).__name__}: {error}"


class SpeechQuality:
    """The three metrics, each on 16 kHz float32 arrays (see `to_quality_rate`)."""

    def __init__(self, dnsmos: bool = True):
        self.unavailable: dict[str, str] = {}
        self._pystoi = self._load("stoi", "pystoi")
        self._pesq = self._load("pesq_wb", "pesq")
        self._dnsmos = self._load("dnsmos", "speechmos.dnsmos") if dnsmos else None
        if not dnsmos:
            self.unavailable["dnsmos"] = "switched off (--no-dnsmos)"

    def _load(self, metric: str, module: str):
        loaded, reason = import_optional(module)
        if reason:
            log.warning("%s unavailable: %s", metric, reason)
            self.unavailable[metric] = reason
        return loaded

    def stoi(self, reference: np.ndarray, degraded: np.ndarray) -> float | None:
        if self._pystoi is None:
            return None
        n = min(len(reference), len(degraded))
        return float(self._pystoi.stoi(reference[:n], degraded[:n], QUALITY_RATE, extended=False))

    def pesq_wb(self, reference: np.ndarray, degraded: np.ndarray) -> float | None:
        """None also for a clip PESQ cannot score (it finds no utterance in the reference)."""
        if self._pesq is None:
            return None
        n = min(len(reference), len(degraded))
        score = self._pesq.pesq(QUALITY_RATE, reference[:n], degraded[:n], "wb",
                                on_error=self._pesq.PesqError.RETURN_VALUES)
        return float(score) if score >= -0.5 else None  # error codes are negative integers below -0.5

    def dnsmos(self, audio: np.ndarray) -> dict[str, float] | None:
        if self._dnsmos is None:
            return None
        scores = self._dnsmos.run(np.clip(audio, -1.0, 1.0).astype(np.float32), QUALITY_RATE)
        return {short: float(scores[key]) for key, short in DNSMOS_KEYS.items()}


def to_quality_rate(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    return resample(audio, sample_rate, QUALITY_RATE)


def mean_or_none(values: list[float | None]) -> float | None:
    """The mean of the scores that exist; None when none does."""
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None
