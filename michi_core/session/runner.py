"""Backbone runners: input embeddings in, final-norm hidden states out, with the KV cache kept inside.

Shape legend: k - new positions, n - kept positions, h - backbone width.

The session (engine.py) decides *what* enters the backbone (the sum of text, latent and listen
embeddings per frame, or text positions) and keeps the embeddings of the window so it can rebuild
the cache when the window fills; a runner only maps embeddings -> hidden states and owns the cache.
The text head (lm_head, tied to the embeddings) and everything else stay in torch.

- `TorchRunner`: the transformers backbone with a DynamicCache (any device, any dtype, LoRA).
- `LlamaCppRunner`: llama.cpp's low-level API on CPU, fed `llama_batch.embd` (token NULL), with
  `embeddings=true` and pooling NONE so it returns the last hidden states after the final norm. A
  SmolLM2-135M step with one position costs ~10 ms there against ~40 ms in torch, almost all of it
  per-token framework overhead that llama.cpp does not have.

llama.cpp runs the *GGUF file* the backbone was loaded from, not the torch module: it is used only
when the torch backbone's weights are exactly that file's (config source "gguf", no LoRA adapter, and
a probe of a few positions agrees with torch). A LoRA-adapted backbone (the `joint` stage) falls back
to torch: merging the adapter into a GGUF at first start is possible but not done.
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from transformers import DynamicCache

from michi_core.model.config import BackboneSource
from michi_core.model.model import MichiModel

log = logging.getLogger(__name__)

RUNNER_CHOICES = ("auto", "torch", "llama.cpp")
# The probe at start: llama.cpp's hidden states of a few positions against torch's (fp32). Q4_1 weights
# computed with 8-bit activations agree at cosine ~0.999 (measured); a fine-tuned or other backbone is
# far below this.
PROBE_MIN_COSINE = 0.99
BATCH_POSITIONS = 512  # llama.cpp n_batch = n_ubatch: positions per decode call (the prefill's chunk)


class BackboneRunner(Protocol):
    name: str  # shown in `michi bench` and the app's latency overlay

    def append(self, embeds: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """New positions (k, h) after the cached ones -> hidden states (1, k, h) fp32 ((1, 1, h) of
        the last position with last_only)."""

    def rebuild(self, kept: torch.Tensor, unchanged: int = 0) -> None:
        """Replace the cache by the positions `kept` (n, h), contiguous from 0. The first `unchanged`
        of them are the same positions as before (nothing was dropped ahead of them), so a runner may
        keep their cache instead of recomputing it."""

    def reset(self) -> None:
        """Forget every position."""

    @property
    def length(self) -> int:
        """Positions in the cache."""


class TorchRunner:
    """The transformers backbone with a DynamicCache."""

    name = "torch"

    def __init__(self, model: MichiModel):
        self.model = model
        self.cache = DynamicCache()

    def append(self, embeds: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        hidden, self.cache = self.model.run_backbone(embeds[None], past_key_values=self.cache, use_cache=True)
        return hidden[:, -1:] if last_only else hidden

    def rebuild(self, kept: torch.Tensor, unchanged: int = 0) -> None:
        # Every kept position is recomputed, the unchanged prefix included (DynamicCache.crop keeps no
        # prefix in transformers 5.x with a positive length); this is the reference the others match.
        self.cache = DynamicCache()
        self.model.run_backbone(kept[None], past_key_values=self.cache, use_cache=True)

    def reset(self) -> None:
        self.cache = DynamicCache()

    @property
    def length(self) -> int:
        return self.cache.get_seq_length()


def _import_llama_cpp():
    """The low-level bindings, with llama.cpp's own stderr chatter routed to our debug log."""
    import llama_cpp

    global _LOG_CALLBACK
    if _LOG_CALLBACK is None:
        @llama_cpp.llama_log_callback
        def _to_logging(level: int, text: bytes, user_data) -> None:
            if level == 3:  # GGML_LOG_LEVEL_ERROR
                log.warning("llama.cpp: %s", text.decode("utf-8", "replace").rstrip())
            else:
                log.debug("llama.cpp: %s", text.decode("utf-8", "replace").rstrip())

        _LOG_CALLBACK = _to_logging  # kept alive: llama.cpp calls it from C for the life of the process
        llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
    return llama_cpp


_LOG_CALLBACK = None


class LlamaCppRunner:
    """A GGUF backbone in llama.cpp, fed input embeddings; the KV cache lives in llama.cpp.

    `threads`: llama.cpp's threads for single steps and for prefill (default: torch's count, so the
    two share the cores the same way). The window is `n_ctx` positions, as the torch backbone's;
    `batch_positions` is llama.cpp's n_batch = n_ubatch, the positions one decode call takes.
    """

    name = "llama.cpp"

    def __init__(self, gguf_path: str | Path, n_ctx: int, threads: int | None = None,
                 batch_positions: int = BATCH_POSITIONS):
        self.llama = _import_llama_cpp()
        lc = self.llama
        self.path = Path(gguf_path)
        mparams = lc.llama_model_default_params()
        mparams.use_mmap = True
        # No extra CPU buffer types: llama.cpp's AMX matmul (batches of > 1 position on a CPU that lists
        # amx_int8) crashed with a segfault on this project's Xeon VMs; the AVX-512 kernels are used.
        mparams.use_extra_bufts = False
        self._model = lc.llama_model_load_from_file(str(self.path).encode(), mparams)
        if not self._model:
            raise RuntimeError(f"llama.cpp could not load {self.path}")
        self.hidden_size = lc.llama_model_n_embd(self._model)
        self.n_ctx = n_ctx
        self.threads = threads or torch.get_num_threads()
        cparams = lc.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = cparams.n_ubatch = min(batch_positions, n_ctx)
        cparams.n_seq_max = 1
        cparams.n_threads = cparams.n_threads_batch = self.threads
        cparams.embeddings = True
        cparams.pooling_type = lc.LLAMA_POOLING_TYPE_NONE
        self._ctx = lc.llama_init_from_model(self._model, cparams)
        if not self._ctx:
            lc.llama_model_free(self._model)
            raise RuntimeError(f"llama.cpp could not make a context of {n_ctx} positions for {self.path}")
        self._memory = lc.llama_get_memory(self._ctx)
        self._batch_size = cparams.n_batch
        self._batch = lc.llama_batch_init(self._batch_size, self.hidden_size, 1)
        self._length = 0
        self._embeddings_on = True

    def __del__(self) -> None:
        lc = getattr(self, "llama", None)
        if lc is None:
            return
        if getattr(self, "_batch", None) is not None:
            lc.llama_batch_free(self._batch)
            self._batch = None
        if getattr(self, "_ctx", None):
            lc.llama_free(self._ctx)
            self._ctx = None
        if getattr(self, "_model", None):
            lc.llama_model_free(self._model)
            self._model = None

    @property
    def length(self) -> int:
        return self._length

    def append(self, embeds: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        assert embeds.ndim == 2 and embeds.shape[1] == self.hidden_size, (
            f"append() takes positions (k, {self.hidden_size}), got {tuple(embeds.shape)}")
        k = embeds.shape[0]
        if self._length + k > self.n_ctx:
            raise ValueError(f"{k} positions after {self._length} overflow the {self.n_ctx}-position window: "
                             "the session rebuilds the cache before that")
        x = np.ascontiguousarray(embeds.detach().to("cpu", torch.float32).numpy())
        out = np.empty((1 if last_only else k, self.hidden_size), np.float32)
        # With embeddings on, llama.cpp outputs every position of a call (and runs its output head on
        # each): positions whose states nobody reads go in calls with embeddings off and no outputs.
        silent = k - 1 if last_only else 0
        start = written = 0
        while start < k:
            stop = min(k, start + self._batch_size, silent if start < silent else k)
            self._decode(x[start:stop], outputs=stop > silent)
            if stop > silent:
                n = stop - start
                ctypes.memmove(out[written:].ctypes.data, self.llama.llama_get_embeddings(self._ctx),
                               n * self.hidden_size * 4)
                written += n
            start = stop
        return torch.from_numpy(out)[None].to(embeds.device)

    def _decode(self, x: np.ndarray, outputs: bool) -> None:
        """One llama_decode of positions x (n, h) after the cached ones."""
        lc, batch, n = self.llama, self._batch, x.shape[0]
        if outputs != self._embeddings_on:
            lc.llama_set_embeddings(self._ctx, outputs)
            self._embeddings_on = outputs
        ctypes.memmove(batch.embd, x.ctypes.data, x.nbytes)
        batch.n_tokens = n
        for i in range(n):
            batch.pos[i] = self._length + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = outputs
        status = lc.llama_decode(self._ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status} at position {self._length}")
        self._length += n

    def rebuild(self, kept: torch.Tensor, unchanged: int = 0) -> None:
        # The positions ahead of the first dropped one attended to nothing that was dropped: their
        # keys and values stay as they are (in practice the pinned prefix); the rest is recomputed.
        unchanged = max(0, min(unchanged, self._length, kept.shape[0]))
        self.llama.llama_memory_seq_rm(self._memory, 0, unchanged, -1)
        self._length = unchanged
        if kept.shape[0] > unchanged:
            self.append(kept[unchanged:], last_only=True)

    def reset(self) -> None:
        self.llama.llama_memory_clear(self._memory, True)
        self._length = 0


def llama_cpp_unavailable(model: MichiModel) -> str | None:
    """Why llama.cpp cannot run this model's backbone (a sentence for the log), or None if it can."""
    backbone = model.config.backbone
    if backbone.source != BackboneSource.GGUF:
        return f"the backbone's weights come from {backbone.source.value!r}, not from a GGUF file"
    if model.config.adapter.rank > 0 or any("lora_" in name for name, _ in model.backbone.named_parameters()):
        return "the backbone carries a LoRA adapter, which the GGUF file has not"
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return 'llama-cpp-python is not installed (pip install -e ".[fast]")'
    except (OSError, RuntimeError) as error:  # installed, but its shared library cannot be loaded
        return f"llama-cpp-python cannot load its library ({error})"
    return None


@torch.inference_mode()
def probe_agreement(model: MichiModel, runner: LlamaCppRunner, positions: int = 8) -> float:
    """Smallest cosine between torch's and the runner's hidden states over a few text positions."""
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, model.config.backbone.vocab_size, (1, positions), generator=generator)
    embeds = model.embed_text(tokens.to(next(model.parameters()).device))[0]
    reference, _ = model.run_backbone(embeds[None], use_cache=False)
    runner.reset()
    got = runner.append(embeds)
    runner.reset()
    return float(torch.nn.functional.cosine_similarity(reference[0].float(), got[0], dim=-1).min())


def make_runner(model: MichiModel, device: torch.device, choice: str | BackboneRunner = "auto",
                threads: int | None = None) -> BackboneRunner:
    """The backbone runner of a session.

    "auto": llama.cpp on CPU when it can run exactly this backbone (see llama_cpp_unavailable and the
    probe), torch otherwise (CUDA, LoRA, other sources, llama-cpp-python not installed), with a log line
    saying why. "llama.cpp" insists (an error if it cannot); "torch" never tries. A runner object is
    used as it is (tests, benchmarks of other GGUF files).
    """
    if not isinstance(choice, str):
        return choice
    if choice not in RUNNER_CHOICES:
        raise ValueError(f"unknown backbone runner {choice!r}: use {', '.join(RUNNER_CHOICES)}")
    if choice == "torch":
        return TorchRunner(model)
    why = "llama.cpp runs on the CPU only" if device.type != "cpu" else llama_cpp_unavailable(model)
    if why is None:
        from michi_core.model.backbone import resolve_gguf

        runner = LlamaCppRunner(resolve_gguf(model.config.backbone.name_or_path),
                                n_ctx=model.config.backbone.max_positions, threads=threads)
        agreement = probe_agreement(model, runner)
        if agreement >= PROBE_MIN_COSINE:
            log.info("backbone runs in llama.cpp (%s, %d threads; agrees with torch at cosine %.4f)",
                     runner.path.name, runner.threads, agreement)
            return runner
        why = (f"its weights are not those of {runner.path.name} (hidden-state cosine {agreement:.3f} "
               f"< {PROBE_MIN_COSINE}: changed after loading?)")
    if choice == "llama.cpp":
        raise ValueError(f"the backbone cannot run in llama.cpp: {why}")
    if device.type == "cpu":
        log.info("backbone runs in torch: %s", why)
    return TorchRunner(model)
