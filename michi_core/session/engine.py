"""The streaming full-duplex engine: one 80 ms frame of the user in, one of the model out.

Shape legend: h - backbone width, d - latent dim, V - vocabulary.

`DuplexSession` owns every piece of streaming state: the backbone's KV cache (in a runner, torch or
llama.cpp: runner.py), the listen head's
and the codec decoder's conv states, the model's previous text token and latent, the queue of
forced text from `say()`. It is pure compute (no threads, no devices, no Qt) and runs the same
code on CPU and CUDA.

Context management: every position's input embedding is kept, with a *pinned* flag for the
prefix (system prompt, voice prompt). When the window would overflow, the oldest unpinned
positions are dropped and the KV cache is rebuilt from the kept embeddings in one prefill, so
positions stay contiguous (RoPE never sees positions beyond the trained window).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from michi_core.model.model import MichiModel
from michi_core.model.phonemes import PhonemeTable
from michi_core.model.speech import SPEECH_PREFIX, SpeechStream, plan_utterance
from michi_core.model.streaming import StreamingState
from michi_core.session.hearing import HeardUtterance, HeardWord, Hearing
from michi_core.session.runner import BackboneRunner, make_runner

log = logging.getLogger(__name__)

SETTLE_SECONDS = 1.0  # after the forced text is spoken, step this long more so the last word rings out
MAX_TAIL_SECONDS = 30.0  # after the user's input ends, step at most this long to finish a say()


@dataclass
class SamplingSettings:
    text_temperature: float = 0.7  # 0 = greedy
    text_top_k: int = 50  # 0 = whole vocabulary
    pad_bias: float = 0.0  # added to PAD's logit: > 0 waits longer, < 0 is more eager to speak
    flow_steps: int = 1  # Euler steps of the speak head
    flow_temperature: float = 1.0  # scale of the flow's starting noise
    say_max_wait_frames: int = 12  # in say(): force the next word after this many PAD frames (~1 s)
    seed: int | None = None


@dataclass
class StageTimes:
    listen_ms: float = 0.0
    backbone_ms: float = 0.0
    flow_ms: float = 0.0
    codec_ms: float = 0.0
    total_ms: float = 0.0


@dataclass
class StepResult:
    audio: np.ndarray  # (frame_size,) float32 at the codec's sample rate
    model_text: str  # text the model started in this frame ("" for none)
    user_text: str  # the user's words that reached the session in this frame (see attach_hearing)
    model_token: int
    user_token: int  # the user text token the backbone read in this frame (PAD for none)
    frame_index: int
    timings: StageTimes
    text_logits: torch.Tensor | None = None  # (V,) kept only with keep_debug=True
    flow_condition: torch.Tensor | None = None  # (h,) kept only with keep_debug=True
    user_words: list[HeardWord] = field(default_factory=list)  # the recognizer's words in user_text
    user_utterance: str = ""  # a whole utterance the recognizer finished in this frame (RAG's query)


@dataclass
class VoicePrompt:
    """A voice to clone: codec latents of a few seconds of speech and what was said."""

    latents: torch.Tensor  # (n, d)
    transcript: str = ""


class _IncrementalDecoder:
    """Token ids -> text pieces, holding back ids that end inside a multi-byte character."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.pending: list[int] = []

    def push(self, token: int) -> str:
        self.pending.append(token)
        text = self.tokenizer.decode(self.pending)
        if text.endswith("\ufffd") and len(self.pending) < 4:
            return ""  # a UTF-8 character is at most 4 bytes: wait for the rest of it
        self.pending.clear()
        # Bytes that never formed a character (a sampling accident) are dropped rather than shown
        # as replacement marks in the transcript.
        return text.replace("\ufffd", "")


@dataclass
class _Context:
    """Input embeddings of every position in the window, and which ones are pinned."""

    embeds: torch.Tensor  # (capacity, h)
    pinned: torch.Tensor  # (capacity,) bool
    length: int = 0
    dropped: int = 0  # positions dropped so far (for diagnostics)


@dataclass
class SessionState:
    """Everything one call remembers. `reset()` makes a new one; nothing of a call lives elsewhere."""

    backbone: BackboneRunner  # holds the keys and values of every position in the window (torch or llama.cpp)
    context: _Context  # the input embeddings of those positions (to rebuild the cache when it fills)
    streams: StreamingState  # the listen head's and the codec's conv histories
    prev_text: int  # y_{t-1}: the model's text token of the last frame
    prev_latent: torch.Tensor  # a_{t-1} (1, 1, d): its audio latent
    generator: torch.Generator  # sampling noise (text and flow), seeded per call
    model_decoder: _IncrementalDecoder
    user_decoder: _IncrementalDecoder
    frame_index: int = 0
    forced: deque = field(default_factory=deque)  # say(): tokens still to speak
    pad_run: int = 0  # say(): PAD frames since the last forced word
    user_tokens: deque = field(default_factory=deque)  # the user's recognized words as tokens, not yet read
    # With a speech stack (model.speech): the utterance being said, texts waiting their turn, and the
    # backbone's state at the latest text token written (what the stack reads, as in training).
    speech: SpeechStream | None = None
    speech_queue: deque = field(default_factory=deque)
    speech_hidden: torch.Tensor | None = None


def fastest_dtype(device: torch.device) -> torch.dtype:
    """The backbone precision a session runs at by default ("auto").

    CUDA: bf16. CPU: bf16 only where the CPU computes it natively (AVX512-BF16 or AMX), where it
    was measured ~1.6x faster than fp32 on the small preset's step with 100 % top-1 agreement
    (KL 0.002) on real text; on AVX2-only CPUs bf16 is emulated and slower, so fp32.
    """
    if device.type == "cuda":
        return torch.bfloat16
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return torch.float32
    return torch.bfloat16 if ("avx512_bf16" in flags or "amx_bf16" in flags) else torch.float32


def resolve_dtype(name: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    choices = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
    if name in (None, "auto"):
        return fastest_dtype(device)
    if name not in choices:
        raise ValueError(f"unknown dtype {name!r}: use auto, fp32 or bf16")
    return choices[name]


class DuplexSession:
    def __init__(self, model: MichiModel, settings: SamplingSettings | None = None,
                 device: str | torch.device = "cpu", dtype: str | torch.dtype | None = torch.float32,
                 keep_debug: bool = False, backbone_runner: str | BackboneRunner = "auto",
                 hearing: Hearing | None = None):
        """`dtype` is the backbone's precision (the heads and codec stay fp32): fp32 by default,
        "auto" for the fastest measured-safe choice on this device (see fastest_dtype).
        `backbone_runner`: "auto" (llama.cpp on CPU when it runs exactly this backbone, see
        runner.make_runner), "torch" or "llama.cpp". `hearing`: the recognizer of the user's words
        (see attach_hearing); None leaves the user's text to the listen head."""
        self.settings = settings or SamplingSettings()
        self.device = torch.device(device)
        self.dtype = torch.float32  # of everything but the backbone
        self.backbone_dtype = resolve_dtype(dtype, self.device)
        self.model = model.to(self.device).eval()
        self.model.backbone.to(self.backbone_dtype)
        self.config = model.config
        self.tokenizer = model.tokenizer
        self.pad_id = self.tokenizer.pad_id
        self.eos_id = self.tokenizer.eos_id
        self.keep_debug = keep_debug
        self.frame_size = self.config.codec.frame_size
        self.max_positions = self.config.backbone.max_positions
        self._sync = self.device.type == "cuda"
        self.runner = make_runner(self.model, self.device, backbone_runner)
        self.hearing: Hearing | None = None
        self.reset()
        if hearing is not None:
            self.attach_hearing(hearing)

    # -- lifecycle ---------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the call: cache, streaming states, prompts."""
        h, d = self.config.backbone.hidden_size, self.config.codec.latent_dim
        generator = torch.Generator(device=self.device)
        generator.manual_seed(self.settings.seed if self.settings.seed is not None else
                              int(torch.randint(0, 2**31 - 1, ()).item()))
        self.runner.reset()
        self.state = SessionState(
            backbone=self.runner,
            context=_Context(
                embeds=torch.zeros(self.max_positions, h, device=self.device, dtype=self.dtype),
                pinned=torch.zeros(self.max_positions, dtype=torch.bool),
            ),
            streams=self.model.new_streaming_state(1),
            prev_text=self.pad_id,
            prev_latent=torch.zeros(1, 1, d, device=self.device, dtype=self.dtype),
            generator=generator,
            model_decoder=_IncrementalDecoder(self.tokenizer),
            user_decoder=_IncrementalDecoder(self.tokenizer),
        )
        if self.hearing is not None:
            self.hearing.reset()

    def attach_hearing(self, hearing: Hearing) -> None:
        """Hear the user's words with a recognizer (michi_core/session/hearing.py) from now on.

        Every frame goes to it, and the words it finds, whenever they come, enter the backbone as
        user text tokens at the next frame positions, one token per frame summed into the frame's
        input through the text embedding (the listen embedding stays). The step never waits for it.
        """
        assert (hearing.sample_rate, hearing.frame_size) == (self.config.codec.sample_rate, self.frame_size), (
            f"the hearing takes {hearing.frame_size}-sample frames at {hearing.sample_rate} Hz, the model "
            f"{self.frame_size} at {self.config.codec.sample_rate} Hz"
        )
        self.hearing = hearing.start()
        self.hearing.reset()

    def close(self) -> None:
        """Stop the recognizer's thread (the session itself holds no other resource)."""
        if self.hearing is not None:
            self.hearing.stop()

    @property
    def context(self) -> _Context:
        return self.state.context

    @property
    def generator(self) -> torch.Generator:
        return self.state.generator

    @property
    def context_length(self) -> int:
        return self.context.length

    @property
    def frame_index(self) -> int:
        return self.state.frame_index

    # -- prompts --------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def prefill_text(self, text: str, pinned: bool | None = None) -> int:
        """Insert text positions (system prompt, RAG passages, a typed message) now.

        Text given before the first frame is pinned (kept when the window fills) unless told
        otherwise. Returns the number of positions added.
        """
        ids = self.tokenizer.encode(text)
        if not ids:
            return 0
        if pinned is None:
            pinned = self.state.frame_index == 0
        tokens = torch.tensor([ids], device=self.device)
        self._append(self.model.embed_text(tokens)[0], pinned)
        return len(ids)

    @torch.inference_mode()
    def set_voice(self, voice: VoicePrompt) -> None:
        """Prefill a voice prompt: its transcript as text, then its latents as the model's own frames.

        The frames carry PAD text and a silent user, exactly as training lays out voice prompts;
        afterwards the model goes on from the prompt's last latent. Pinned.
        """
        if self.model.speech is not None:
            log.warning("this model speaks in the one voice its speech stack was trained on: voice prompt ignored")
            return
        latents = voice.latents.to(self.device, self.dtype)
        assert latents.ndim == 2 and latents.shape[1] == self.config.codec.latent_dim, (
            f"voice latents must be (frames, {self.config.codec.latent_dim}), got {tuple(latents.shape)}"
        )
        if voice.transcript:
            self.prefill_text(voice.transcript, pinned=True)
        n = latents.shape[0]
        silence = torch.zeros(1, n * self.frame_size, device=self.device, dtype=self.dtype)
        with self.model.using(self.state.streams):
            user_embeds = self.model.listen(silence)  # (1, n, h): the listen stream hears the silence
        prev_text = torch.full((1, n), self.pad_id, device=self.device)
        prev_latents = torch.cat([self.state.prev_latent, latents[None, :-1]], dim=1)
        self._append(self.model.embed_frames(prev_text, prev_latents, user_embeds)[0], pinned=True)
        self.state.prev_text = self.pad_id
        self.state.prev_latent = latents[None, -1:]

    def say(self, text: str) -> None:
        """Force the model's text stream to `text` (causal TTS); the model keeps choosing *when*
        each word starts, and goes on by itself once the text is spoken."""
        if self.model.speech is not None:
            self.state.speech_queue.append(text)
            return
        self.state.forced.extend(self.tokenizer.encode(text))
        self.state.pad_run = 0

    @property
    def is_saying(self) -> bool:
        if self.model.speech is not None:
            return bool(self.state.speech_queue) or (self.state.speech is not None and not self.state.speech.finished)
        return bool(self.state.forced)

    def run(self, user_frames: Iterable[np.ndarray], settle_seconds: float = SETTLE_SECONDS,
            max_tail_seconds: float = MAX_TAIL_SECONDS) -> Iterator[StepResult]:
        """Step through the user's frames, then on with a silent user until the model is quiet.

        After the input ends the session keeps stepping while a say() is being spoken, and
        `settle_seconds` more so the last word rings out; never more than `max_tail_seconds` of tail.
        This is the one loop `michi chat`, the voice preview and the evaluations share.
        """
        frame_rate = self.config.codec.frame_rate
        settle_frames = int(settle_seconds * frame_rate)
        max_tail = int(max_tail_seconds * frame_rate)
        quiet = 0  # frames since the model last had forced text to say (or user words to read)
        for frame in user_frames:
            yield self.step(frame)
            quiet = 0 if self.is_saying else quiet + 1
        silence = np.zeros(self.frame_size, np.float32)
        for _ in range(max_tail):
            if quiet >= settle_frames and not self.is_saying and not self._hearing_busy():
                return
            yield self.step(silence)
            quiet = 0 if self.is_saying or self._hearing_busy() else quiet + 1

    def _hearing_busy(self) -> bool:
        """The recognizer may still deliver words of what the user said, or some wait for a frame."""
        return self.hearing is not None and (self.hearing.busy or bool(self.state.user_tokens))

    # -- the frame step -----------------------------------------------------------------------------------
    @torch.inference_mode()
    def step(self, user_frame: np.ndarray | torch.Tensor, force_text: int | None = None,
             force_latent: torch.Tensor | None = None) -> StepResult:
        """One frame of the user's audio (frame_size samples at the codec rate) -> one frame out.

        `force_text` / `force_latent` replace the model's choices (teacher forcing: evaluation and
        debugging); normally both are None.
        """
        times = StageTimes()
        start = self._now()
        frame = torch.as_tensor(user_frame, dtype=self.dtype, device=self.device).reshape(1, -1)
        assert frame.shape[1] == self.frame_size, (
            f"step() takes one frame of {self.frame_size} samples, got {frame.shape[1]}"
        )
        model, state = self.model, self.state
        words, utterance = self._hear(frame)
        if model.speech is not None:
            return self._speech_step(frame, start, force_text, force_latent, words, utterance)
        with model.using(state.streams):
            heard = model.hear(frame)
            user_token = state.user_tokens.popleft() if state.user_tokens else self.pad_id
            t_listen = self._now()

            prev_text = torch.tensor([[state.prev_text]], device=self.device)
            inputs = model.embed_frames(prev_text, state.prev_latent, heard.embed)  # (1, 1, h)
            if user_token != self.pad_id:  # the user's word as text: "text embeddings are information-dense"
                inputs = inputs + model.embed_text(torch.tensor([[user_token]], device=self.device))
            hidden = self._append(inputs[0], pinned=False)[:, -1]  # (1, h)
            if force_text is not None:
                token, logits = force_text, model.text_logits(hidden)[0] if self.keep_debug else None
            else:
                token, logits = self._choose_text(hidden)
            t_backbone = self._now()

            spoken = model.speak(hidden, token, steps=self.settings.flow_steps,
                                 temperature=self.settings.flow_temperature, generator=state.generator,
                                 latent=None if force_latent is None else force_latent.to(self.device, self.dtype),
                                 clock=self._now)
            t_codec = self._now()

        state.prev_text = token
        state.prev_latent = spoken.latent[:, None]
        state.frame_index += 1
        times.listen_ms = 1000 * (t_listen - start)
        times.backbone_ms = 1000 * (t_backbone - t_listen)
        times.flow_ms = 1000 * (spoken.flow_done - t_backbone)
        times.codec_ms = 1000 * (t_codec - spoken.flow_done)
        times.total_ms = 1000 * (t_codec - start)
        return StepResult(
            audio=spoken.audio.float().cpu().numpy(),
            model_text=self._text_of(token, state.model_decoder),
            user_text=("".join(" " + w.text for w in words) if self.hearing is not None
                       else self._text_of(heard.token, state.user_decoder)),
            model_token=token,
            user_token=user_token if self.hearing is not None else heard.token,
            frame_index=state.frame_index - 1,
            timings=times,
            text_logits=logits.cpu() if self.keep_debug else None,
            flow_condition=spoken.condition[0].float().cpu() if self.keep_debug else None,
            user_words=words,
            user_utterance=utterance,
        )

    def _hear(self, frame: torch.Tensor) -> tuple[list[HeardWord], str]:
        """Hand the frame to the recognizer (a copy into its queue) and take the words it found
        since the last frame; their tokens queue up for the next frame positions."""
        if self.hearing is None:
            return [], ""
        self.hearing.feed(frame[0].float().cpu().numpy())
        words, utterance = [], ""
        for item in self.hearing.poll():
            if isinstance(item, HeardWord):
                words.append(item)
                self.state.user_tokens.extend(self.tokenizer.encode(" " + item.text))
            elif isinstance(item, HeardUtterance):
                utterance = item.text
        return words, utterance

    def _speech_step(self, frame: torch.Tensor, start: float, force_text: int | None,
                     force_latent: torch.Tensor | None, words: list[HeardWord], utterance: str) -> StepResult:
        """step() of a model with a speech stack: the stack decides whether the next word enters the
        text stream and says this frame; the backbone reads each text token as it is written (a text
        position), and its state at the latest one is what the stack reads next frame, as in training.
        `force_text` (PAD or not) forces the word decision, `force_latent` the latent."""
        model, state, s = self.model, self.state, self.settings
        times = StageTimes()
        with model.using(state.streams):
            heard = model.hear(frame)
            if state.user_tokens:  # no frame positions in this layout: the user's words are text positions
                self._append(model.embed_text(torch.tensor([list(state.user_tokens)], device=self.device))[0],
                             pinned=False)
                state.user_tokens.clear()
            t_listen = self._now()
            if (state.speech is None or state.speech.finished) and state.speech_queue:
                if self.context.length == 0:  # training read the words after this prefix
                    self.prefill_text(SPEECH_PREFIX, pinned=True)
                utterance = plan_utterance(state.speech_queue.popleft(), self.tokenizer,
                                           PhonemeTable(model.config.speech.symbols))
                state.speech = SpeechStream(model.speech, utterance, self.device)
            token = self.pad_id
            if state.speech is not None:
                said = state.speech.step(state.speech_hidden, emit_bias=-s.pad_bias, max_wait=s.say_max_wait_frames,
                                         flow_steps=s.flow_steps, temperature=s.flow_temperature,
                                         generator=state.generator,
                                         force_emit=None if force_text is None else force_text != self.pad_id)
                latent = said.latent
                t_flow = self._now()
                if said.token is not None:
                    token = said.token
                    embed = model.embed_text(torch.tensor([[token]], device=self.device))[0]
                    state.speech_hidden = self._append(embed, pinned=False)[0, -1]
            else:
                latent = model.speech.silence[None]
                t_flow = self._now()
            t_backbone = self._now()
            if force_latent is not None:
                latent = force_latent.to(self.device, self.dtype).reshape(1, -1)
                if state.speech is not None:  # the stack goes on from the latent actually said
                    state.speech.state.prev_latent = model.speech.normalize(latent)
            spoken = model.voice(latent, clock=self._now)
            t_codec = self._now()
        state.prev_text = token
        state.prev_latent = spoken.latent[:, None]
        state.frame_index += 1
        times.listen_ms = 1000 * (t_listen - start)
        times.flow_ms = 1000 * (t_flow - t_listen)
        times.backbone_ms = 1000 * (t_backbone - t_flow)
        times.codec_ms = 1000 * (t_codec - t_backbone)
        times.total_ms = 1000 * (t_codec - start)
        return StepResult(
            audio=spoken.audio.float().cpu().numpy(),
            model_text=self._text_of(token, state.model_decoder),
            user_text=("".join(" " + w.text for w in words) if self.hearing is not None
                       else self._text_of(heard.token, state.user_decoder)),
            model_token=token,
            user_token=heard.token,
            frame_index=state.frame_index - 1,
            timings=times,
            user_words=words,
            user_utterance=utterance,
        )

    # -- internals --------------------------------------------------------------------------------------------
    def _now(self) -> float:
        if self._sync:
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def _text_of(self, token: int, decoder: _IncrementalDecoder) -> str:
        if token in (self.pad_id, self.eos_id):
            return ""
        return decoder.push(token)

    def _choose_text(self, hidden: torch.Tensor) -> tuple[int, torch.Tensor | None]:
        """The model's text token for this frame, and the full logits when they were computed.

        While say() drives the text only two logits matter (PAD, or the next word now?): the
        vocabulary-wide projection, a quarter of the backbone's weight traffic, is skipped.
        """
        s = self.settings
        forced = self.state.forced
        if forced and not self.keep_debug:
            word = forced[0]
            pad_logit, word_logit = self.model.text_logits(hidden, only=[self.pad_id, word])[0].tolist()
            return self._forced_choice(word, word_logit, pad_logit + s.pad_bias), None
        logits = self.model.text_logits(hidden)[0].clone()
        logits[self.pad_id] += s.pad_bias
        if forced:
            return self._forced_choice(forced[0], float(logits[forced[0]]), float(logits[self.pad_id])), logits
        return self._sample(logits), logits

    def _forced_choice(self, word: int, word_logit: float, pad_logit: float) -> int:
        if word_logit >= pad_logit or self.state.pad_run >= self.settings.say_max_wait_frames:
            self.state.forced.popleft()
            self.state.pad_run = 0
            return word
        self.state.pad_run += 1
        return self.pad_id

    def _sample(self, logits: torch.Tensor) -> int:
        s = self.settings
        if s.text_temperature <= 0:
            return int(logits.argmax())
        if s.text_top_k > 0:
            kth = torch.topk(logits, min(s.text_top_k, logits.numel())).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits / s.text_temperature, dim=-1)
        return int(torch.multinomial(probs.to(self.generator.device), 1, generator=self.generator))

    def _append(self, embeds: torch.Tensor, pinned: bool) -> torch.Tensor:
        """Run new positions (k, h) through the backbone with the cache; returns the last one's hidden
        state (1, 1, h)."""
        k = embeds.shape[0]
        half = self.max_positions // 2
        pinned_now = int(self.context.pinned[: self.context.length].sum())
        if k > half or (pinned and pinned_now + k > half):
            raise ValueError(
                f"{k} new positions{' (pinned)' if pinned else ''} with {pinned_now} pinned already would "
                f"leave too little of the {self.max_positions}-position window for the conversation: "
                "shorten the system prompt, voice or inserted text"
            )
        self._make_room(k)
        ctx = self.context
        ctx.embeds[ctx.length: ctx.length + k] = embeds
        ctx.pinned[ctx.length: ctx.length + k] = pinned
        ctx.length += k
        return self.state.backbone.append(embeds, last_only=True)

    def _make_room(self, k: int) -> None:
        ctx = self.context
        if ctx.length + k <= self.max_positions:
            return
        pinned = int(ctx.pinned[: ctx.length].sum())  # at most half the window (checked in _append)
        # Drop the oldest unpinned positions so that a quarter of the window is free again.
        target = (3 * self.max_positions) // 4 - k
        unpinned = (~ctx.pinned[: ctx.length]).nonzero().flatten()
        n_drop = ctx.length - max(target, pinned)
        drop = torch.zeros(ctx.length, dtype=torch.bool)
        drop[unpinned[:n_drop]] = True
        keep = (~drop).nonzero().flatten()
        kept_embeds = ctx.embeds[keep.to(self.device)].clone()
        kept_pinned = ctx.pinned[keep].clone()
        ctx.embeds.zero_()
        ctx.pinned.zero_()
        ctx.embeds[: len(keep)] = kept_embeds
        ctx.pinned[: len(keep)] = kept_pinned
        ctx.dropped += ctx.length - len(keep)
        ctx.length = len(keep)
        log.debug("context full: dropped %d old positions, re-prefilled %d", n_drop, len(keep))
        first_dropped = int(drop.nonzero()[0]) if bool(drop.any()) else len(keep)
        self.state.backbone.rebuild(kept_embeds, unchanged=first_dropped)

