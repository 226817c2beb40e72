"""`michi-train eval model`: what a trained Michi checkpoint does, on held-out data.

- say: `speak()` (the engine's causal TTS, the user silent) on held-out sentences, heard by
  Whisper and scored by WER against the sentence;
- speaker similarity: for each held-out speaker, a voice prompt from one of their utterances and
  another held-out sentence said in that voice; resemblyzer similarity to the own prompt vs the
  other prompts, and the win rate (speaker.py);
- perplexity of the backbone on held-out text, with its LoRA adapter and without it (the original
  backbone: the adapter's base weights are frozen in training), so a language-ability loss shows;
- duplex behaviour on held-out two-channel dialogues, when the corpus has them (duplex.py).

Shapes: n - samples, L - tokens.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from michi_core.audio import load_audio, pad_to_frames, save_audio
from michi_core.model.model import MichiModel, TextBatch, load_model
from michi_core.session.engine import DuplexSession, SamplingSettings, VoicePrompt
from michi_core.stores.voices import MAX_SPEAK_S, speak, voice_from_audio

from .asr import Transcriber, word_error_rate
from .duplex import ANSWER_WINDOW_S, dialogue_turn_taking, summarize
from .heldout import HELD_OUT, held_out_rows, held_out_texts, one_per_speaker
from .quality import import_optional

log = logging.getLogger(__name__)

SPEAK_BASE_S = 3.0  # speak() may take this long plus SPEAK_S_PER_CHAR per character (4x a normal pace)
SPEAK_S_PER_CHAR = 0.25


def speak_seconds(text: str) -> float:
    """How long speak() may run for `text` before giving up: generous, but a model that never
    finishes costs seconds, not MAX_SPEAK_S per sentence."""
    return min(MAX_SPEAK_S, SPEAK_BASE_S + SPEAK_S_PER_CHAR * len(text))


def evaluate_model(checkpoint: str | Path, corpus: str | Path, limit: int | None = None, whisper: str = "base",
                   device: str = "cpu", seed: int = 0, audio_dir: Path | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    model = load_model(checkpoint).to(device).eval()
    asr = Transcriber(whisper)
    unavailable: dict[str, str] = {}
    items: dict[str, list] = {}
    metrics: dict[str, Any] = {}
    utterances = held_out_rows(corpus, "utterance")
    if not utterances:
        raise SystemExit(f"{corpus}: no held-out utterances ({'/'.join(HELD_OUT)} splits) to evaluate on")

    metrics["say"], items["say"] = say_wer(model, utterances[:limit] if limit else utterances, asr, seed, audio_dir)
    metrics["speaker_similarity"], items["speaker_similarity"] = None, []
    _, reason = import_optional("resemblyzer")
    voices = one_per_speaker(utterances, limit)
    if reason:
        unavailable["speaker_similarity"] = reason
    elif len(voices) < 2:
        unavailable["speaker_similarity"] = f"needs held-out utterances of 2 speakers, the corpus has {len(voices)}"
    else:
        metrics["speaker_similarity"], items["speaker_similarity"] = speaker_similarity(model, voices, seed, audio_dir)

    texts = held_out_texts(corpus, limit)
    metrics["perplexity"] = backbone_perplexity(model, texts)  # without an adapter both are the same backbone

    dialogues = held_out_rows(corpus, "dialogue", limit)
    metrics["duplex"], items["duplex"] = None, []
    if not dialogues:
        unavailable["duplex"] = "the corpus has no held-out dialogues (`michi-train data dialogues`)"
    else:
        metrics["duplex"], items["duplex"] = duplex_behaviour(model, dialogues, seed, audio_dir)
        for who in ("model", "reference"):
            if metrics["duplex"][f"{who}_latency_frames"] is None:
                unavailable[f"duplex.{who}_latency_frames"] = (
                    f"no answer within {ANSWER_WINDOW_S} s after any of the {metrics['duplex']['turns']} user turns")
    return {"evaluation": "model", "checkpoint": str(checkpoint), "corpus": str(corpus), "splits": list(HELD_OUT),
            "preset": model.config.preset, "whisper": asr.name, "metrics": metrics, "unavailable": unavailable,
            "items": items, "seconds": time.perf_counter() - started}


def say_wer(model: MichiModel, rows: list[dict], asr: Transcriber, seed: int,
            audio_dir: Path | None) -> tuple[dict[str, Any], list[dict]]:
    sr = model.config.codec.sample_rate
    items = []
    for k, row in enumerate(rows):
        audio = speak(model, row["text"], settings=SamplingSettings(seed=seed + k),
                      max_seconds=speak_seconds(row["text"]))
        items.append({"id": row["id"], "text": row["text"], "heard": asr(audio, sr), "seconds": len(audio) / sr})
        if audio_dir is not None:
            save_audio(audio_dir / f"say.{row['id']}.flac", audio, sr)
        log.info("say %r -> heard %r", row["text"], items[-1]["heard"])
    wer = word_error_rate([i["text"] for i in items], [i["heard"] for i in items])
    return {"wer": wer, "sentences": len(items), "seconds": float(np.mean([i["seconds"] for i in items]))}, items


def voice_prompt(model: MichiModel, wave: np.ndarray, transcript: str) -> VoicePrompt:
    """The utterance as a voice prompt; when prompt and transcript would not fit the pinned half of
    the context window (a small preset's window), the latents are cut and the transcript left out
    (a cut clip no longer matches its text)."""
    prompt = voice_from_audio(model, wave, transcript)
    room = model.config.backbone.max_positions // 2
    if len(prompt.latents) + len(model.tokenizer.encode(transcript)) > room:
        prompt = VoicePrompt(latents=prompt.latents[:room], transcript="")
    return prompt


def speaker_similarity(model: MichiModel, voices: list[dict], seed: int,
                       audio_dir: Path | None) -> tuple[dict[str, Any], list[dict]]:
    from .speaker import SpeakerEncoder, cloning_scores

    sr = model.config.codec.sample_rate
    encoder = SpeakerEncoder()
    generated, prompts, items = [], [], []
    for k, voice in enumerate(voices):
        wave = load_audio(voice["audio_path"], sr)
        sentence = voices[(k + 1) % len(voices)]["text"]  # held out, and not what the prompt says
        audio = speak(model, sentence, voice_prompt(model, wave, voice["text"]), SamplingSettings(seed=seed + k),
                      max_seconds=speak_seconds(sentence))
        generated.append(encoder.embed(audio, sr))
        prompts.append(encoder.embed(wave, sr))
        items.append({"speaker": voice["speaker"], "prompt": voice["id"], "sentence": sentence,
                      "similarity_to_prompt": float(generated[-1] @ prompts[-1])})
        if audio_dir is not None:
            save_audio(audio_dir / f"clone.{voice['id']}.flac", audio, sr)
    scores = cloning_scores(np.stack(generated), np.stack(prompts))
    return {**scores, "speakers": len(voices)}, items


@contextlib.contextmanager
def adapter_disabled(model: MichiModel):
    """The original backbone for a while: every LoRA layer switched off (yields whether there were any)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.backbone.modules() if isinstance(m, BaseTunerLayer)]
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield bool(layers)
    finally:
        for layer in layers:
            layer.enable_adapters(True)


@torch.inference_mode()
def text_perplexity(model: MichiModel, texts: list[str]) -> tuple[float, int]:
    """exp(mean next-token CE) over all tokens of the texts (each ending in EOS, as trained)."""
    tokenizer = model.tokenizer
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for text in texts:
        ids = (tokenizer.encode(text) + [tokenizer.eos_id])[: model.config.backbone.max_positions]
        tokens = torch.tensor([ids], device=device)  # (1, L)
        loss = model(TextBatch(tokens, torch.ones_like(tokens, dtype=torch.bool))).total
        total += float(loss) * (len(ids) - 1)
        count += len(ids) - 1
    return math.exp(total / count), count


def backbone_perplexity(model: MichiModel, texts: list[str]) -> dict[str, Any]:
    adapted, tokens = text_perplexity(model, texts)
    with adapter_disabled(model) as had_adapter:
        original, _ = text_perplexity(model, texts)
    return {"adapted": adapted, "original": original, "ratio": adapted / original, "texts": len(texts),
            "tokens": tokens, "adapter": had_adapter}


def converse(model: MichiModel, user_audio: np.ndarray, context: str | None, seed: int,
             tail_s: float = ANSWER_WINDOW_S) -> tuple[np.ndarray, bool]:
    """The model's audio while it hears user_audio (then tail_s of silence) frame by frame, with the
    dialogue's text context prefilled as in training. Returns (audio, whether the context fit)."""
    codec = model.config.codec
    session = DuplexSession(model, SamplingSettings(seed=seed), device=next(model.parameters()).device,
                            dtype=model.text_embedding.weight.dtype)
    context_fit = True
    if context:
        try:
            session.prefill_text(context)
        except ValueError as error:  # longer than the pinned half of a small preset's window
            log.warning("dialogue context left out: %s", error)
            context_fit = False
    frames = pad_to_frames(user_audio, codec.frame_size).reshape(-1, codec.frame_size)
    silence = np.zeros((round(tail_s * codec.frame_rate), codec.frame_size), np.float32)
    return np.concatenate([session.step(frame).audio for frame in np.concatenate([frames, silence])]), context_fit


def duplex_behaviour(model: MichiModel, dialogues: list[dict], seed: int,
                     audio_dir: Path | None) -> tuple[dict[str, Any], list[dict]]:
    sr = model.config.codec.sample_rate
    results = []
    for k, row in enumerate(dialogues):
        user = load_audio(row["user_audio_path"], sr)
        reference = load_audio(row["audio_path"], sr)
        audio, context_fit = converse(model, user, row["context"], seed + k)
        results.append({"id": row["id"], "context_fit": context_fit,
                        **dialogue_turn_taking(audio, reference, row["turns"], model.config.codec)})
        if audio_dir is not None:
            save_audio(audio_dir / f"duplex.{row['id']}.flac", audio, sr)
    return {**summarize(results), "contexts_left_out": sum(not r["context_fit"] for r in results)}, results


MODEL_LABELS = {
    "say.wer": "say(): WER of Whisper on held-out sentences",
    "speaker_similarity.same_speaker": "voice cloning: similarity to the own prompt",
    "speaker_similarity.other_speakers": "voice cloning: similarity to other prompts",
    "speaker_similarity.win_rate": "voice cloning: win rate (own prompt closer)",
    "perplexity.adapted": "held-out text perplexity, adapted backbone",
    "perplexity.original": "held-out text perplexity, original backbone",
    "duplex.model_voiced_during_user": "duplex: model voiced while the user speaks (share of frames)",
    "duplex.reference_voiced_during_user": "duplex: the same for the recorded assistant",
    "duplex.model_answered_turns": f"duplex: user turns answered within {ANSWER_WINDOW_S:g} s",
    "duplex.model_answered_dialogues": "duplex: dialogues with every turn answered",
    "duplex.model_latency_frames": "duplex: median answer latency (frames)",
    "duplex.reference_latency_frames": "duplex: the recorded assistant's median latency (frames)",
}
