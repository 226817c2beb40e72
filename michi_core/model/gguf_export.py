"""Write a transformers Llama backbone as a GGUF file llama.cpp can run (F32, F16 or Q8_0).

Used for backbones that have no GGUF of their own: the tiny random preset in tests (llama.cpp against
torch on the same weights) and michi-530m's shapes in `michi bench`. The shipped `small` backbone is
already a GGUF and runs from its own file.

llama.cpp's Llama keeps the original (interleaved) rotary layout of Q and K rows, transformers the
rotate-half one: the rows are permuted as llama.cpp's convert_hf_to_gguf.py does.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

FILE_TYPES = ("f32", "f16", "q8_0")


def _permute_rotary(weight: np.ndarray, n_head: int) -> np.ndarray:
    """(n_head * head_dim, in) rotate-half rows -> interleaved rows (convert_hf_to_gguf's permute)."""
    return (weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def write_gguf(backbone, path: str | Path, file_type: str = "f32") -> Path:
    """A `LlamaForCausalLM` -> a GGUF file with the same weights (2-D ones in `file_type`; norms F32).

    The vocabulary is a placeholder (byte tokens and numbered ones): Michi feeds llama.cpp embeddings,
    never token ids, and keeps its own tokenizer.
    """
    import gguf

    if file_type not in FILE_TYPES:
        raise ValueError(f"unknown GGUF file type {file_type!r}: use {', '.join(FILE_TYPES)}")
    cfg = backbone.config
    path = Path(path)
    h, n_head, n_kv = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or h // n_head
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("michi-backbone")
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(h)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_rope_dimension_count(head_dim)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_freq_base(float(getattr(cfg, "rope_theta", None) or cfg.rope_parameters["rope_theta"]))
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                          "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[file_type])
    # A placeholder SentencePiece vocabulary: 256 byte tokens, the rest numbered.
    tokens = [f"<0x{i:02X}>" for i in range(min(256, cfg.vocab_size))]
    tokens += [f"<michi_{i}>" for i in range(len(tokens), cfg.vocab_size)]
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * len(tokens))
    writer.add_token_types([gguf.TokenType.BYTE if i < 256 else gguf.TokenType.NORMAL for i in range(len(tokens))])

    def add(name: str, tensor: torch.Tensor) -> None:
        data = tensor.detach().to("cpu", torch.float32).numpy()
        if data.ndim == 1 or file_type == "f32":
            writer.add_tensor(name, np.ascontiguousarray(data))
        elif file_type == "f16" or data.shape[-1] % 32:  # Q8_0 blocks are 32 wide: F16 otherwise
            writer.add_tensor(name, data.astype(np.float16))
        else:
            q = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)

    model = backbone.model
    add("token_embd.weight", model.embed_tokens.weight)
    add("output_norm.weight", model.norm.weight)
    if not cfg.tie_word_embeddings:
        add("output.weight", backbone.lm_head.weight)
    for i, layer in enumerate(model.layers):
        attn, mlp = layer.self_attn, layer.mlp
        add(f"blk.{i}.attn_norm.weight", layer.input_layernorm.weight)
        add(f"blk.{i}.attn_q.weight", torch.from_numpy(_permute_rotary(attn.q_proj.weight.detach().float().numpy(),
                                                                       n_head)))
        add(f"blk.{i}.attn_k.weight", torch.from_numpy(_permute_rotary(attn.k_proj.weight.detach().float().numpy(),
                                                                       n_kv)))
        add(f"blk.{i}.attn_v.weight", attn.v_proj.weight)
        add(f"blk.{i}.attn_output.weight", attn.o_proj.weight)
        add(f"blk.{i}.ffn_norm.weight", layer.post_attention_layernorm.weight)
        add(f"blk.{i}.ffn_gate.weight", mlp.gate_proj.weight)
        add(f"blk.{i}.ffn_up.weight", mlp.up_proj.weight)
        add(f"blk.{i}.ffn_down.weight", mlp.down_proj.weight)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    log.debug("wrote %s (%s)", path, file_type)
    return path
