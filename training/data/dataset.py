"""Frame-aligned training samples over a corpus manifest (torch Datasets) and their collation.

One sample is a stretch of conversation cut into 80 ms frames, as the backbone sees it:
the model's channel (its audio, its cached codec latents, its inner-monologue text stream with
EOS where its turns end) and the user's channel (audio and the user's text stream). An utterance
fills one channel and leaves the other silent; a dialogue fills both. Text-only rows come from
`TextDataset`. The speech stage draws and collates the batches itself (`collate_frames`,
`collate_text`): each step's batch is a pure function of the seed and the step.

Shapes: B - batch, T - frames, F - samples per frame (CodecConfig.frame_size), D - latent dim,
L - context or text tokens.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from michi_core.audio import load_audio
from michi_core.model.config import CodecConfig
from michi_core.model.tokenizer import Tokenizer

from .align import frame_tokens
from .manifest import Manifest

LATENTS_DIR = "latents"


def latents_path(corpus_dir: str | Path, item_id: str, channel: str = "model") -> Path:
    """Where the codec stage caches an item's latents: (T, D) float32 .npy, frame t = samples
    [t*F, (t+1)*F) of that channel's audio."""
    return Path(corpus_dir) / LATENTS_DIR / f"{item_id}.{channel}.npy"


class FrameDataset(Dataset):
    def __init__(self, corpus_dir: str | Path, tokenizer: Tokenizer, codec: CodecConfig | None = None,
                 split: str = "train", kinds: Iterable[str] = ("utterance", "dialogue"),
                 utterance_channel: str = "model", max_frames: int | None = None, seed: int = 0):
        """utterance_channel: "model" (the model says it: TTS-like) or "user" (the user says it:
        the listen head transcribes it). max_frames crops longer items at a random frame."""
        assert utterance_channel in ("model", "user"), "utterance_channel is 'model' or 'user'"
        manifest = Manifest(corpus_dir)  # read once here: workers get plain rows, no database handle
        self.root = manifest.root
        self.tokenizer = tokenizer
        self.codec = codec or CodecConfig()
        self.utterance_channel = utterance_channel
        self.max_frames = max_frames
        self.seed = seed
        self.epoch = 0
        kinds = tuple(kinds)
        where = (f"filter_reason is null and split = ? and kind in ({', '.join('?' * len(kinds))}) "
                 "and (alignment is not null or turns is not null)")
        self.rows = [{k: row[k] for k in ("id", "kind", "path", "user_path", "duration", "alignment", "turns",
                                          "context")}
                     for row in manifest.rows(where, [split, *kinds])]

    def set_epoch(self, epoch: int) -> None:
        """New random crops each epoch (like DistributedSampler.set_epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        rate, frame_size = self.codec.frame_rate, self.codec.frame_size
        pad = self.tokenizer.pad_id
        if row["kind"] == "utterance":
            audio = load_audio(self.root / row["path"], self.codec.sample_rate)
            silence = np.zeros_like(audio)
            num_frames = -(-len(audio) // frame_size)
            if self.utterance_channel == "model":
                audio_model, audio_user = audio, silence
                text_model = frame_tokens(row["alignment"], self.tokenizer, rate, num_frames,
                                          eos_at=[len(audio) / self.codec.sample_rate])
                text_user = np.full(num_frames, pad, np.int64)
            else:
                audio_model, audio_user = silence, audio
                text_model = np.full(num_frames, pad, np.int64)
                text_user = frame_tokens(row["alignment"], self.tokenizer, rate, num_frames)
        else:
            audio_model = load_audio(self.root / row["path"], self.codec.sample_rate)
            audio_user = load_audio(self.root / row["user_path"], self.codec.sample_rate)
            num_frames = -(-len(audio_model) // frame_size)
            said = {role: [w for t in row["turns"] if t["role"] == role for w in t["words"]]
                    for role in ("assistant", "user")}
            turn_ends = [t["end"] for t in row["turns"] if t["role"] == "assistant" and not t["backchannel"]]
            text_model = frame_tokens(said["assistant"], self.tokenizer, rate, num_frames, eos_at=turn_ends)
            text_user = frame_tokens(said["user"], self.tokenizer, rate, num_frames)

        num_frames = max(num_frames, len(text_model), len(text_user))  # overflowing text extends the item
        sample = {
            "audio_model": _fit(audio_model, num_frames * frame_size, 0.0),  # (T*F,)
            "audio_user": _fit(audio_user, num_frames * frame_size, 0.0),  # (T*F,)
            "text_model": _fit(text_model, num_frames, pad),  # (T,)
            "text_user": _fit(text_user, num_frames, pad),  # (T,)
            "latents_model": None,
        }
        cached = latents_path(self.root, row["id"], "model")
        if cached.exists():
            latents = np.load(cached).astype(np.float32)  # (T', D)
            missing = np.zeros((max(0, num_frames - len(latents)), latents.shape[1]), np.float32)
            sample["latents_model"] = np.concatenate([latents[:num_frames], missing])  # (T, D)
        if self.max_frames and num_frames > self.max_frames:
            rng = random.Random(f"{self.seed}:{self.epoch}:{row['id']}")
            start = rng.randrange(num_frames - self.max_frames + 1)
            sample = _crop(sample, start, self.max_frames, frame_size)
            num_frames = self.max_frames
        context = self.tokenizer.encode(row["context"]) if row["context"] else []
        sample.update(id=row["id"], num_frames=num_frames, context=np.asarray(context, np.int64))  # (L,)
        return sample


def _fit(array: np.ndarray, length: int, fill) -> np.ndarray:
    """Cut or pad a 1-D array to exactly length."""
    if len(array) >= length:
        return array[:length]
    return np.concatenate([array, np.full(length - len(array), fill, array.dtype)])


def _crop(sample: dict[str, Any], start: int, frames: int, frame_size: int) -> dict[str, Any]:
    cropped = {}
    for key, value in sample.items():
        if value is None:
            cropped[key] = None
        elif key.startswith("audio"):
            cropped[key] = value[start * frame_size:(start + frames) * frame_size]
        else:
            cropped[key] = value[start:start + frames]
    return cropped


def collate_frames(samples: list[dict[str, Any]], pad_id: int, frame_size: int) -> dict[str, Any]:
    """Pad to the longest item. Masks say which frames (and latents, context tokens) are real."""
    batch_size = len(samples)
    frames = max(s["num_frames"] for s in samples)
    batch: dict[str, Any] = {
        "ids": [s["id"] for s in samples],
        "audio_model": torch.zeros(batch_size, frames * frame_size),  # (B, T*F)
        "audio_user": torch.zeros(batch_size, frames * frame_size),  # (B, T*F)
        "text_model": torch.full((batch_size, frames), pad_id, dtype=torch.long),  # (B, T)
        "text_user": torch.full((batch_size, frames), pad_id, dtype=torch.long),  # (B, T)
        "frame_mask": torch.zeros(batch_size, frames, dtype=torch.bool),  # (B, T)
    }
    latent_dims = {s["latents_model"].shape[1] for s in samples if s["latents_model"] is not None}
    assert len(latent_dims) <= 1, f"latents of sizes {latent_dims} in one corpus: re-run the codec cache"
    if latent_dims:
        batch["latents_model"] = torch.zeros(batch_size, frames, latent_dims.pop())  # (B, T, D)
        batch["latent_mask"] = torch.zeros(batch_size, frames, dtype=torch.bool)  # (B, T)
    context_len = max(len(s["context"]) for s in samples)
    batch["context"] = torch.full((batch_size, context_len), pad_id, dtype=torch.long)  # (B, L)
    batch["context_mask"] = torch.zeros(batch_size, context_len, dtype=torch.bool)  # (B, L)
    for b, s in enumerate(samples):
        n = s["num_frames"]
        batch["audio_model"][b, :n * frame_size] = torch.from_numpy(s["audio_model"])
        batch["audio_user"][b, :n * frame_size] = torch.from_numpy(s["audio_user"])
        batch["text_model"][b, :n] = torch.from_numpy(s["text_model"])
        batch["text_user"][b, :n] = torch.from_numpy(s["text_user"])
        batch["frame_mask"][b, :n] = True
        if s["latents_model"] is not None:
            batch["latents_model"][b, :n] = torch.from_numpy(s["latents_model"])
            batch["latent_mask"][b, :n] = True
        batch["context"][b, :len(s["context"])] = torch.from_numpy(s["context"])
        batch["context_mask"][b, :len(s["context"])] = True
    return batch


class TextDataset(Dataset):
    """Text-only rows as token sequences ending in EOS, at most max_tokens long."""

    def __init__(self, corpus_dir: str | Path, tokenizer: Tokenizer, split: str = "train",
                 max_tokens: int = 512):
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        manifest = Manifest(corpus_dir)
        where = "kind = 'text' and filter_reason is null and split = ?"
        self.rows = [(row["id"], row["text"]) for row in manifest.rows(where, [split])]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item_id, text = self.rows[index]
        tokens = (self.tokenizer.encode(text) + [self.tokenizer.eos_id])[: self.max_tokens]
        return {"id": item_id, "tokens": np.asarray(tokens, np.int64)}


def collate_text(samples: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    length = max(len(s["tokens"]) for s in samples)
    tokens = torch.full((len(samples), length), pad_id, dtype=torch.long)  # (B, L)
    mask = torch.zeros(len(samples), length, dtype=torch.bool)  # (B, L)
    for b, s in enumerate(samples):
        tokens[b, :len(s["tokens"])] = torch.from_numpy(s["tokens"])
        mask[b, :len(s["tokens"])] = True
    return {"ids": [s["id"] for s in samples], "tokens": tokens, "mask": mask}

