"""`michi-train eval codec`: how much of the speech survives the codec, on held-out utterances.

Each utterance goes through the *streaming* path the engine uses (encode and decode one 80 ms
frame at a time, posterior means), then:
- WER: Whisper on the original and on the resynthesized audio, both against the known text, and the
  codec's target (resynthesized within 1.5x the original's, plus 2 points);
- STOI, wideband PESQ (resynthesized vs original, 16 kHz) and DNSMOS of both;
- mel distance: the log-mel L1 the codec stage trains on (training/losses.py);
- latent statistics: mean and spread of the posterior means, the mean posterior standard deviation
  and the KL to N(0, I) per dimension: the flow head's targets should stay near N(0, I).

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
from training.losses import mel_loss

from .asr import Transcriber, word_error_rate
from .heldout import HELD_OUT, held_out_rows
from .quality import SpeechQuality, mean_or_none, to_quality_rate

log = logging.getLogger(__name__)


@torch.inference_mode()
def resynthesize_streaming(codec: Codec, wave: np.ndarray) -> tuple[np.ndarray, Posterior]:
    """(n,) float32 -> the codec's (n,) resynthesis, frame by frame, and the posterior over (T, d)."""
    fs = codec.config.frame_size
    device = next(codec.parameters()).device
    frames = torch.from_numpy(pad_to_frames(wave, fs).reshape(-1, fs)).to(device)  # (T, fs)
    means, logvars, out = [], [], []
    codec.start_streaming(1)
    try:
        for frame in frames:
            posterior = codec.encode(frame[None])  # (1, 1, d)
            means.append(posterior.mean[0])
            logvars.append(posterior.logvar[0])
            out.append(codec.decode(posterior.mean)[0])
    finally:
        codec.stop_streaming()
    audio = torch.cat(out).float().cpu().numpy()[: len(wave)]
    return audio, Posterior(torch.cat(means), torch.cat(logvars))  # (T, d) each


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
    items, posteriors = [], []
    for row in rows:
        item, posterior = _score(codec, load_audio(row["audio_path"], sr), row["text"], quality, asr, audio_dir,
                                 row["id"])
        items.append({"id": row["id"], "speaker": row["speaker"], **item})
        posteriors.append(posterior)
    unavailable = dict(quality.unavailable)
    metrics: dict[str, Any] = {**_summary(items, quality, unavailable), "latents": latent_statistics(posteriors)}
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
            item, _ = _score(codec, load_audio(recording.path, sr), recording.text, quality, asr, audio_dir,
                             f"real-{recording.id}")
            real_items.append({"id": recording.id, "path": str(recording.path), **item})
        if real_items:
            real_unavailable: dict[str, str] = {}
            metrics["real"] = {**_summary(real_items, quality, real_unavailable), "clips": len(real_items)}
            for key, reason in {**quality.unavailable, **real_unavailable}.items():
                unavailable.setdefault(f"real.{key}", reason)
    return {"evaluation": "codec", "checkpoint": str(checkpoint), "corpus": str(corpus), "splits": list(HELD_OUT),
            "utterances": len(items), "whisper": asr.name, "streaming": True, "metrics": metrics,
            "unavailable": unavailable, "items": items, "real_items": real_items,
            "seconds": time.perf_counter() - started}


# The resynthesis target of the codec issue: its WER within 1.5x the original audio's, plus 2 points.
WER_TARGET_RATIO, WER_TARGET_POINTS = 1.5, 0.02


def _score(codec: Codec, original: np.ndarray, text: str, quality: SpeechQuality, asr: Transcriber,
           audio_dir: Path | None, name: str) -> tuple[dict[str, Any], Posterior]:
    """One clip through the streaming codec, scored against its original."""
    sr = codec.config.sample_rate
    resynthesized, posterior = resynthesize_streaming(codec, original)
    reference_16k, resynthesized_16k = to_quality_rate(original, sr), to_quality_rate(resynthesized, sr)
    item = {
        "text": text, "seconds": len(original) / sr,
        "heard_original": asr(original, sr), "heard_resynthesized": asr(resynthesized, sr),
        "stoi": quality.stoi(reference_16k, resynthesized_16k),
        "pesq_wb": quality.pesq_wb(reference_16k, resynthesized_16k),
        "dnsmos_original": quality.dnsmos(reference_16k),
        "dnsmos_resynthesized": quality.dnsmos(resynthesized_16k),
        "mel_distance": float(mel_loss(torch.from_numpy(resynthesized)[None], torch.from_numpy(original)[None], sr)),
    }
    if audio_dir is not None:
        save_audio(audio_dir / f"{name}.resynthesized.flac", resynthesized, sr)
    log.info("%s: heard %r", name, item["heard_resynthesized"])
    return item, posterior


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
        "mel_distance": float(np.mean([item["mel_distance"] for item in items])),
    }
    if "pesq_wb" not in quality.unavailable and summary["pesq_wb"] is None:
        unavailable["pesq_wb"] = "PESQ found no utterance in any reference clip"
    if "dnsmos" not in quality.unavailable:
        summary["dnsmos"] = {which: {key: float(np.mean([item[f"dnsmos_{which}"][key] for item in items]))
                                     for key in items[0][f"dnsmos_{which}"]}
                             for which in ("original", "resynthesized")}
    return summary


def latent_statistics(posteriors: list[Posterior]) -> dict[str, float]:
    """Over every frame of every clip: the posterior means' mean and standard deviation, the mean
    posterior standard deviation, and KL(q || N(0, I)) per frame and dimension (the codec's KL term)."""
    posterior = Posterior(torch.cat([p.mean for p in posteriors]), torch.cat([p.logvar for p in posteriors]))
    return {"mean": float(posterior.mean.mean()), "std": float(posterior.mean.std()),
            "posterior_std": float(torch.exp(0.5 * posterior.logvar).mean()), "kl": float(posterior.kl())}


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
    "mel_distance": "mel distance (log-mel L1, as trained)",
    "latents.mean": "latent mean",
    "latents.std": "latent standard deviation",
    "latents.posterior_std": "mean posterior standard deviation",
    "latents.kl": "KL to N(0, I) per dimension",
    "real.clips": "real human recordings (not in the corpus)",
    "real.wer.original": "real speech: WER of the original",
    "real.wer.resynthesized": "real speech: WER of the resynthesized",
    "real.wer.meets_target": "real speech: meets the WER target",
    "real.stoi": "real speech: STOI",
    "real.pesq_wb": "real speech: PESQ, wideband",
    "real.dnsmos.resynthesized.ovrl": "real speech: DNSMOS overall, resynthesized",
    "real.mel_distance": "real speech: mel distance",
}
