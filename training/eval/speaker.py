"""Speaker similarity: does voice-prompted speech sound like its prompt, and more than like others?

resemblyzer's d-vector (a 256-d, L2-normalised speaker embedding) of each clip; cosine similarity
of the same speaker is ~0.97-0.99, of different speakers 0.5-0.85. For k voice prompts and the
speech generated from each, `cloning_scores` reports the mean similarity of generated speech to
its own prompt, to the other prompts, and the win rate: the share of (generated clip, other
prompt) pairs where the clip is closer to its own prompt than to that other one (0.5 = chance).

Shapes: k - voices, e - embedding size.
"""

from __future__ import annotations

import numpy as np

from michi_core.audio import resample

SPEAKER_RATE = 16_000  # Hz: resemblyzer's rate
MIN_VOICED_S = 0.5  # below this after silence trimming, embed the untrimmed clip instead


class SpeakerEncoder:
    def __init__(self):
        from resemblyzer import VoiceEncoder

        self.encoder = VoiceEncoder("cpu", verbose=False)

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """(n,) float32 -> (e,) unit vector. Loudness-normalised and long pauses cut (resemblyzer's
        preprocessing); a clip that trimming would empty (no voice found) is embedded as it is."""
        from resemblyzer import preprocess_wav
        from resemblyzer.audio import normalize_volume
        from resemblyzer.hparams import audio_norm_target_dBFS

        wav = resample(audio, sample_rate, SPEAKER_RATE)
        trimmed = preprocess_wav(wav)
        if len(trimmed) < MIN_VOICED_S * SPEAKER_RATE:
            trimmed = normalize_volume(wav, audio_norm_target_dBFS, increase_only=True)
        return self.encoder.embed_utterance(trimmed.astype(np.float32))


def cloning_scores(generated: np.ndarray, prompts: np.ndarray) -> dict[str, float]:
    """generated (k, e) and prompts (k, e) unit vectors, row i generated from prompt i."""
    k = len(prompts)
    assert generated.shape == prompts.shape and k >= 2, "need one generated clip per prompt, at least 2 voices"
    sims = generated @ prompts.T  # (k, k): sims[i, j] = cos(generated i, prompt j)
    own = np.diag(sims)  # (k,)
    others = ~np.eye(k, dtype=bool)
    wins = own[:, None] > sims  # (k, k)
    return {"same_speaker": float(own.mean()), "other_speakers": float(sims[others].mean()),
            "win_rate": float(wins[others].mean())}
