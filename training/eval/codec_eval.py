"""`michi-train eval codec`: how much of the speech survives the codec, on held-out utterances.

Each utterance goes through the *streaming* path the engine uses (encode and decode one 80 ms
frame at a time, posterior means), then:
- WER: Whisper on the original and on the resynthesized audio, both against the known text, and the
  codec's target (resynthesized within 1.5x the original's, plus 2 points);
- STOI, wideband PESQ (resynthesized vs original, 16 kHz) and DNSMOS of both;
- speaker similarity: resemblyzer's cosine between the original's and the resynthesis's d-vectors;
- mel distance: L1 between the log-mels (the codec's own analysis) of the original and the resynthesis;
- decode cost: wall time of each frame's decode (latent -> 1920 samples), p50/p95, on this machine;
- latent statistics: mean and spread of the posterior means, the mean posterior standard deviation,
  the KL to N(0, I) per dimension and the frame-to-frame step: the flow head's targets should stay
  near N(0, I) and smooth.

The resynthesis lags the original by `codec.delay_seconds` (the vocoder's look-ahead and the
analysis window): the stream is fed that much silence at the end and the resynthesis is shifted
back, so every measure compares the same moments.

With `real`, human recordings that are in no corpus (real_speech.py) are scored the same way, apart.

Shapes: n - samples, T - frames, d - latent dim.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from michi_core.audio import load_audio, pad_to_frames, save_audio
from michi_core.model.codec import Codec, Posterior
from training.stages.codec import latent_statistics

from .asr import Transcriber, word_error_rate
from .heldout import HELD_OUT, held_out_rows
from .quality import SpeechQuality, mean_or_none, to_quality_rate
from .speaker import SpeakerEncoder

log = logging.getLogger(__name__)


def resynthesize_streaming(codec: Codec, wave: np.ndarray,
                           decode_ms: list[float] | None = None) -> tuple[np.ndarray, Posterior]:
    """(n,) float32 -> the codec's (n,) resynthesis, frame by frame and aligned with `wave`, and the
    posterior over (T, d) (Codec.resynthesize)."""
    device = next(codec.parameters()).device
    audio, posterior = codec.resynthesize(torch.from_numpy(wave).to(device), decode_ms)
    return audio.float().cpu().numpy(), posterior


def evaluate_codec(checkpoint: str | Path, corpus: str | Path, limit: int | None = None, whisper: str = "base",
                   device: str = "cpu", dnsmos: bool = True, audio_dir: Path | None = None,
                   real: str | Path | None = None) -> dict[str, Any]:
    """The report (see report.py) of a codec checkpoint, or of the codec inside a model checkpoint.
    `real`: a folder of human recordings with transcripts (or "arctic"), scored apart as metrics["real"]."""
    started = time.perf_counter()
    codec = Codec.from_pretrained(checkpoint).to(device).eval()
    sr = codec.config.sample_rate
    rows = held_out_rows(corpus, "utterance", limit)
    if not rows:
        raise SystemExit(f"{corpus}: no held-out utterances ({'/'.join(HELD_OUT)} splits) to evaluate on")
    quality = SpeechQuality(dnsmos=dnsmos)
    asr = Transcriber(whisper)
    speakers = SpeakerEncoder()
    items, posteriors, decode_ms = [], [], []
    for row in rows:
        item, posterior = _score(codec, load_audio(row["audio_path"], sr), row["text"], quality, asr, speakers,
                                 audio_dir, row["id"], decode_ms)
        items.append({"id": row["id"], "speaker": row["speaker"], **item})
        posteriors.append(posterior)
    unavailable = dict(quality.unavailable)
    metrics: dict[str, Any] = {**_summary(items, quality, unavailable), "latents": latent_statistics(posteriors),
                               "latent_dim": codec.config.latent_dim,
                               "delay_ms": 1000 * codec.delay_seconds, "lookahead_ms": 1000 * codec.lookahead_seconds}
    real_items = []
    if real is None:
        unavailable["real"] = "no real recordings given (--real DIR or --real arctic)"
    else:
        from .real_speech import RealSpeechError, real_recordings

        try:
            recordings = real_recordings(real)
        except RealSpeechError as error:
            recordings, unavailable["real"] = [], str(error)
        for recording in recordings:
            item, _ = _score(codec, load_audio(recording.path, sr), recording.text, quality, asr, speakers,
                             audio_dir, f"real-{recording.id}", decode_ms)
            real_items.append({"id": recording.id, "path": str(recording.path), **item})
        if real_items:
            real_unavailable: dict[str, str] = {}
            metrics["real"] = {**_summary(real_items, quality, real_unavailable), "clips": len(real_items)}
            for key, reason in {**quality.unavailable, **real_unavailable}.items():
                unavailable.setdefault(f"real.{key}", reason)
    metrics["decode_ms"] = {"p50": float(np.percentile(decode_ms, 50)), "p95": float(np.percentile(decode_ms, 95)),
                            "frames": len(decode_ms), "threads": torch.get_num_threads()}
    return {"evaluation": "codec", "checkpoint": str(checkpoint), "corpus": str(corpus), "splits": list(HELD_OUT),
            "utterances": len(items), "whisper": asr.name, "streaming": True, "metrics": metrics,
            "unavailable": unavailable, "items": items, "real_items": real_items,
            "seconds": time.perf_counter() - started}


# The resynthesis target of the codec issue: its WER within 1.5x the original audio's, plus 2 points.
WER_TARGET_RATIO, WER_TARGET_POINTS = 1.5, 0.02


def _score(codec: Codec, original: np.ndarray, text: str, quality: SpeechQuality, asr: Transcriber,
           speakers: SpeakerEncoder, audio_dir: Path | None, name: str,
           decode_ms: list[float]) -> tuple[dict[str, Any], Posterior]:
    """One clip through the streaming codec, scored against its original."""
    sr = codec.config.sample_rate
    resynthesized, posterior = resynthesize_streaming(codec, original, decode_ms)
    reference_16k, resynthesized_16k = to_quality_rate(original, sr), to_quality_rate(resynthesized, sr)
    item = {
        "text": text, "seconds": len(original) / sr,
        "heard_original": asr(original, sr), "heard_resynthesized": asr(resynthesized, sr),
        "speaker_similarity": float(speakers.embed(original, sr) @ speakers.embed(resynthesized, sr)),
        "stoi": quality.stoi(reference_16k, resynthesized_16k),
        "pesq_wb": quality.pesq_wb(reference_16k, resynthesized_16k),
        "dnsmos_original": quality.dnsmos(reference_16k),
        "dnsmos_resynthesized": quality.dnsmos(resynthesized_16k),
        "mel_distance": mel_distance(codec, original, resynthesized),
    }
    if audio_dir is not None:
        save_audio(audio_dir / f"{name}.resynthesized.flac", resynthesized, sr)
    log.info("%s: heard %r", name, item["heard_resynthesized"])
    return item, posterior


@torch.inference_mode()
def mel_distance(codec: Codec, original: np.ndarray, resynthesized: np.ndarray) -> float:
    """Mean |log-mel difference| by the codec's own analysis (the vocoder's input features)."""
    fs = codec.config.frame_size
    a, b = (torch.from_numpy(pad_to_frames(x, fs))[None] for x in (original, resynthesized))
    with codec.offline():
        return float((codec.mel(a) - codec.mel(b)).abs().mean())


def _summary(items: list[dict[str, Any]], quality: SpeechQuality, unavailable: dict[str, str]) -> dict[str, Any]:
    """WER (with the target), STOI, PESQ, DNSMOS and mel distance over scored clips."""
    texts = [item["text"] for item in items]
    original = word_error_rate(texts, [item["heard_original"] for item in items])
    resynthesized = word_error_rate(texts, [item["heard_resynthesized"] for item in items])
    target = WER_TARGET_RATIO * original + WER_TARGET_POINTS
    summary: dict[str, Any] = {
        "wer": {"original": original, "resynthesized": resynthesized, "target": target,
                "meets_target": resynthesized <= target},
        "stoi": mean_or_none([item["stoi"] for item in items]),
        "pesq_wb": mean_or_none([item["pesq_wb"] for item in items]),
        "dnsmos": None,
        "speaker_similarity": float(np.mean([item["speaker_similarity"] for item in items])),
        "mel_distance": float(np.mean([item["mel_distance"] for item in items])),
    }
    if "pesq_wb" not in quality.unavailable and summary["pesq_wb"] is None:
        unavailable["pesq_wb"] = "PESQ found no utterance in any reference clip"
    if "dnsmos" not in quality.unavailable:
        summary["dnsmos"] = {which: {key: float(np.mean([item[f"dnsmos_{which}"][key] for item in items]))
                                     for key in items[0][f"dnsmos_{which}"]}
                             for which in ("original", "resynthesized")}
    return summary


CODEC_LABELS = {
    "wer.original": "WER of the original audio (Whisper vs known text)",
    "wer.resynthesized": "WER of the resynthesized audio",
    "wer.target": "WER target (1.5x the original's + 2 points)",
    "wer.meets_target": "resynthesis meets the WER target",
    "stoi": "STOI (resynthesized vs original)",
    "pesq_wb": "PESQ, wideband, 16 kHz",
    "dnsmos.original.ovrl": "DNSMOS overall, original",
    "dnsmos.resynthesized.ovrl": "DNSMOS overall, resynthesized",
    "dnsmos.resynthesized.sig": "DNSMOS signal, resynthesized",
    "dnsmos.resynthesized.bak": "DNSMOS background, resynthesized",
    "dnsmos.resynthesized.p808": "DNSMOS P.808, resynthesized",
    "speaker_similarity": "speaker similarity, resynthesized vs original (resemblyzer cosine)",
    "mel_distance": "mel distance (log-mel L1, the vocoder's features)",
    "latent_dim": "latent size (dimensions per 80 ms frame)",
    "delay_ms": "codec delay, ms (analysis window + vocoder look-ahead + resamplers)",
    "lookahead_ms": "vocoder look-ahead, ms",
    "decode_ms.p50": "decode time per 80 ms frame, p50 (ms)",
    "decode_ms.p95": "decode time per 80 ms frame, p95 (ms)",
    "decode_ms.threads": "torch threads while decoding",
    "latents.mean": "latent mean",
    "latents.std": "latent standard deviation",
    "latents.posterior_std": "mean posterior standard deviation",
    "latents.kl": "KL to N(0, I) per dimension",
    "latents.step_std": "latent frame-to-frame change (std, relative to the latents' std)",
    "real.clips": "real human recordings (not in the corpus)",
    "real.wer.original": "real speech: WER of the original",
    "real.wer.resynthesized": "real speech: WER of the resynthesized",
    "real.wer.meets_target": "real speech: meets the WER target",
    "real.speaker_similarity": "real speech: speaker similarity, resynthesized vs original",
    "real.stoi": "real speech: STOI",
    "real.pesq_wb": "real speech: PESQ, wideband",
    "real.dnsmos.resynthesized.ovrl": "real speech: DNSMOS overall, resynthesized",
    "real.mel_distance": "real speech: mel distance",
}
