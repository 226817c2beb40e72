"""`michi bench`: step time per stage, real-time factor, time-to-first-audio, prefill, memory.

Numbers are medians / percentiles over many steps, written as JSON with the machine they ran on.
Speed targets are recorded here, never asserted in tests.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import logging
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from michi_core.model.model import MichiModel, load_model, shipped_codec
from michi_core.session.engine import DuplexSession, SamplingSettings, StageTimes, fastest_dtype
from michi_core.session.runner import BackboneRunner, LlamaCppRunner, TorchRunner, llama_cpp_unavailable

log = logging.getLogger(__name__)

def results_dir() -> Path:
    """benchmarks/results/ of the checkout; in a desktop bundle (read-only, never written to), the
    user data dir's benchmarks/ folder."""
    import sys

    if getattr(sys, "frozen", False):
        from michi_core.paths import data_dir

        return data_dir() / "benchmarks"
    return Path(__file__).resolve().parents[2] / "benchmarks" / "results"
STAGES = [f.name for f in dataclasses.fields(StageTimes)]
PROMPT = "What is the weather like in Paris today, and should I take an umbrella?"


def machine_info(device: torch.device) -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if hasattr(os, "getloadavg"):  # other work on the machine skews CPU timings: say how busy it was
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        info["cpu_model"] = names[0] if names else None
    except OSError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def quantize_int8(model: MichiModel) -> MichiModel:
    """Dynamic int8 quantization of the transformer layers and the flow head, CPU only.

    Measured on the real SmolLM2-135M (teacher-forced text): per-tensor int8 keeps only ~27 % of
    fp32's top-1 next tokens (perplexity 85 -> 300), per-channel ~45 %; bf16 keeps 100 % (KL 0.002).
    So int8 is benchmarked for what it buys, never used by default.
    """
    from torch.ao.quantization import quantize_dynamic

    model.backbone.model.layers = quantize_dynamic(model.backbone.model.layers, {torch.nn.Linear},
                                                   dtype=torch.qint8)
    model.flow = quantize_dynamic(model.flow, {torch.nn.Linear}, dtype=torch.qint8)
    return model


def _median_ms(fn, repeats: int) -> float:
    return statistics.median(fn() for _ in range(repeats))


def run_bench(model: MichiModel, device: str = "cpu", frames: int = 200, warmup: int = 10,
              dtype: torch.dtype = torch.float32, label: str = "fp32", seed: int = 0,
              backbone_runner: str | BackboneRunner = "torch") -> dict:
    device_t = torch.device(device)
    if device_t.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device_t)
    session = DuplexSession(model, SamplingSettings(seed=seed), device=device_t, dtype=dtype,
                            backbone_runner=backbone_runner)
    fs = model.config.codec.frame_size
    rng = np.random.default_rng(seed)
    user_audio = (0.05 * rng.standard_normal((frames + warmup, fs))).astype(np.float32)

    session.prefill_text("You are Michi, a helpful voice assistant.")
    per_stage: dict[str, list[float]] = {name: [] for name in STAGES}
    for i in range(frames + warmup):
        result = session.step(user_audio[i])
        if i >= warmup:
            for name in STAGES:
                per_stage[name].append(getattr(result.timings, name))

    def ttfa_say() -> float:
        session.reset()
        session.prefill_text("You are Michi, a helpful voice assistant.")
        for _ in range(3):
            session.step(user_audio[0])
        session.settings.pad_bias = -1e4  # speak at once: we time compute, not the model's choice
        start = time.perf_counter()
        session.say("Hello, how can I help?")
        result = session.step(user_audio[1])
        elapsed = 1000 * (time.perf_counter() - start)
        session.settings.pad_bias = 0.0
        assert result.model_token != session.pad_id
        return elapsed

    def ttfa_prompt() -> float:
        session.reset()
        session.prefill_text("You are Michi, a helpful voice assistant.")
        for _ in range(3):
            session.step(user_audio[0])
        start = time.perf_counter()
        session.prefill_text(PROMPT)
        session.step(user_audio[1])
        return 1000 * (time.perf_counter() - start)

    tokens_500 = (PROMPT + " ") * 40
    n_tokens = len(session.tokenizer.encode(tokens_500))

    def prefill_500() -> float:
        session.reset()
        ids = session.tokenizer.encode(tokens_500)[:500]
        text = session.tokenizer.decode(ids)
        start = time.perf_counter()
        session.prefill_text(text)
        if device_t.type == "cuda":
            torch.cuda.synchronize(device_t)
        return 1000 * (time.perf_counter() - start)

    repeats = 10
    results = {
        "label": label,
        "preset": model.config.preset,
        "device": str(device_t),
        "dtype": str(dtype).replace("torch.", ""),
        "backbone_runner": session.runner.name,
        "backbone_file": str(getattr(session.runner, "path", "")) or None,
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "frames": frames,
        "frame_ms": model.config.codec.frame_ms,
        "parameters": sum(p.numel() for p in model.parameters()),
        "step_ms": {name: {"p50": percentile(v, 50), "p95": percentile(v, 95), "max": max(v)}
                    for name, v in per_stage.items()},
        "ttfa_say_ms": _median_ms(ttfa_say, repeats),
        "ttfa_prompt_ms": _median_ms(ttfa_prompt, repeats),
        "prefill_500_tokens_ms": (_median_ms(prefill_500, 3)
                                  if n_tokens >= 500 and model.config.backbone.max_positions >= 1000 else None),
    }
    results["realtime_factor_p95"] = results["step_ms"]["total_ms"]["p95"] / model.config.codec.frame_ms
    results["realtime_factor_p50"] = results["step_ms"]["total_ms"]["p50"] / model.config.codec.frame_ms
    if device_t.type == "cuda":
        results["peak_memory_mb"] = torch.cuda.max_memory_allocated(device_t) / 2**20
    else:
        results["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return results


@torch.inference_mode()
def output_drift(reference: MichiModel, variant: MichiModel, dtype: torch.dtype, frames: int = 50,
                 seed: int = 0, backbone_runner: str | BackboneRunner = "torch") -> dict:
    """How far a faster variant's outputs move from fp32 torch, under identical teacher-forced inputs:
    text logits and backbone states on frame inputs, and the text head's top-1 on a real text prompt."""
    fs = reference.config.codec.frame_size
    rng = np.random.default_rng(seed)
    audio = (0.05 * rng.standard_normal((frames, fs))).astype(np.float32)
    ref = DuplexSession(reference, SamplingSettings(seed=seed), keep_debug=True, backbone_runner="torch")
    var = DuplexSession(variant, SamplingSettings(seed=seed), keep_debug=True, dtype=dtype,
                        backbone_runner=backbone_runner)
    for s in (ref, var):
        s.prefill_text("You are Michi, a helpful voice assistant.")
    logit_diffs, cond_diffs, hidden_cos, agree = [], [], [], 0
    latent = torch.zeros(reference.config.codec.latent_dim)
    pad_embed = reference.embed_text(torch.tensor([ref.pad_id]))[0]
    for i in range(frames):
        r = ref.step(audio[i], force_text=ref.pad_id, force_latent=latent)
        v = var.step(audio[i], force_text=ref.pad_id, force_latent=latent)
        logit_diffs.append(float((r.text_logits - v.text_logits.float()).abs().max()))
        cond_diffs.append(float(((r.flow_condition - v.flow_condition.float()).norm()
                                 / r.flow_condition.norm()).item()))
        # flow condition = hidden + the (forced PAD) token's embedding: the hidden state is the rest
        hidden_cos.append(float(torch.nn.functional.cosine_similarity(
            r.flow_condition - pad_embed, v.flow_condition.float() - pad_embed, dim=0)))
        agree += int(r.text_logits.argmax() == v.text_logits.argmax())
    # A real prompt, every position: does the text head read the same next word from both?
    ids = torch.tensor([reference.tokenizer.encode(PROMPT)])
    ref_hidden = TorchRunner(reference).append(reference.embed_text(ids)[0])
    var.runner.reset()
    var_hidden = var.runner.append(variant.embed_text(ids)[0])
    var.runner.reset()
    prompt_cos = torch.nn.functional.cosine_similarity(ref_hidden[0], var_hidden[0].float(), dim=-1)
    prompt_agree = (reference.text_logits(ref_hidden).argmax(-1) == variant.text_logits(var_hidden).argmax(-1))
    return {"max_abs_logit_diff": max(logit_diffs), "median_abs_logit_diff": statistics.median(logit_diffs),
            "median_rel_flow_condition_diff": statistics.median(cond_diffs), "argmax_agreement": agree / frames,
            "min_hidden_cosine": min(hidden_cos), "median_hidden_cosine": statistics.median(hidden_cos),
            "prompt_positions": int(ids.shape[1]), "prompt_min_hidden_cosine": float(prompt_cos.min()),
            "prompt_top1_agreement": float(prompt_agree.float().mean())}


def format_table(results: list[dict]) -> str:
    lines = []
    head = f"{'variant':<10} {'stage':<12} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}"
    for r in results:
        lines.append(f"== {r['preset']} on {r['device']} ({r['label']}, backbone in {r['backbone_runner']}, "
                     f"{r['parameters'] / 1e6:.1f}M params, {r['frames']} frames, load average {r['load_average_1m']})")
        lines.append(head)
        for stage, v in r["step_ms"].items():
            lines.append(f"{r['label']:<10} {stage:<12} {v['p50']:8.2f} {v['p95']:8.2f} {v['max']:8.2f}")
        lines.append(f"real-time factor (p95 step / {r['frame_ms']:.0f} ms): {r['realtime_factor_p95']:.3f}"
                     f"   (p50: {r['realtime_factor_p50']:.3f})")
        lines.append(f"TTFA say(): {r['ttfa_say_ms']:.1f} ms   TTFA text prompt: {r['ttfa_prompt_ms']:.1f} ms   "
                     f"prefill 500 tokens: {r['prefill_500_tokens_ms'] or float('nan'):.1f} ms   "
                     f"peak memory: {r['peak_memory_mb']:.0f} MB")
        if "drift_vs_fp32" in r:
            d = r["drift_vs_fp32"]
            lines.append(f"vs fp32 torch: max |logit diff| {d['max_abs_logit_diff']:.3g}, argmax agreement "
                         f"{100 * d['argmax_agreement']:.0f}%, flow-condition rel. diff "
                         f"{d['median_rel_flow_condition_diff']:.3g}, hidden cosine min {d['min_hidden_cosine']:.4f}"
                         f" (median {d['median_hidden_cosine']:.5f}); text prompt ({d['prompt_positions']} positions): "
                         f"top-1 agreement {100 * d['prompt_top1_agreement']:.0f}%, hidden cosine min "
                         f"{d['prompt_min_hidden_cosine']:.4f}")
        lines.append("")
    return "\n".join(lines)


def bench_command(preset_name: str, device: str, frames: int, json_path: str | None,
                  checkpoint: str | None, variants: list[str], threads: int | None) -> dict:
    if threads:
        torch.set_num_threads(threads)
    device_t = torch.device(device)
    if device_t.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available on this machine")
    torch.manual_seed(0)
    # Random weights for what has no offline source (michi-530m's backbone comes from a hub);
    # `small`'s real backbone is local, and the drift of bf16/int8 only means something on it.
    from michi_core.model.config import preset

    needs_hub = preset(preset_name).backbone.source == "pretrained"
    reference = load_model(checkpoint, preset_name, random_backbone=checkpoint is None and needs_hub)
    results = []
    for variant in variants:
        runner: str | BackboneRunner = "torch"
        if variant == "fp32":
            model, dtype = reference, torch.float32
        elif variant == "llama.cpp":
            if device_t.type != "cpu":
                log.warning("llama.cpp runs the backbone on the CPU only; skipped on %s", device)
                continue
            # the text head and the rest in torch at the fastest safe precision (bf16 where native)
            model, dtype = _copy(reference), fastest_dtype(device_t)
            runner = llama_cpp_runner(reference)
        elif variant == "bf16":
            model, dtype = _copy(reference), torch.bfloat16
        elif variant == "int8":
            if device_t.type != "cpu":
                log.warning("int8 dynamic quantization is CPU-only; skipped on %s", device)
                continue
            model, dtype = quantize_int8(_copy(reference)), torch.float32
        else:
            raise SystemExit(f"unknown variant {variant!r}: use fp32, bf16, int8 or llama.cpp")
        log.info("benchmarking %s %s on %s", preset_name, variant, device)
        r = run_bench(model, device, frames=frames, dtype=dtype, label=variant, backbone_runner=runner)
        if variant != "fp32" and device_t.type == "cpu":
            r["drift_vs_fp32"] = output_drift(reference, model, dtype, backbone_runner=runner)
        results.append(r)
        if model is not reference:
            del model
    report = {
        "benchmark": "michi bench",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(device_t),
        "settings": {"preset": reference.config.preset, "device": device, "frames": frames,
                     "checkpoint": checkpoint,
                     "weights": ("checkpoint" if checkpoint else
                                 "random" if needs_hub else
                                 "pretrained backbone, shipped codec, random heads"
                                 if shipped_codec(reference.config.preset) else "pretrained backbone, random heads"),
                     "variants": variants, "threads": torch.get_num_threads()},
        "results": results,
    }
    print(format_table(results))
    if json_path is None:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        json_path = str(results_dir() / f"bench_{reference.config.preset}_{device_t.type}_{stamp}.json")
    Path(json_path).parent.mkdir(parents=True, exist_ok=True)
    Path(json_path).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {json_path}")
    return report


def llama_cpp_runner(model: MichiModel) -> str | BackboneRunner:
    """The llama.cpp runner of a benchmark: the backbone's own GGUF (`small`), else its weights written
    once as a Q8_0 GGUF in the cache (michi-530m's shapes; random weights, so only the speed and the
    agreement with torch mean something)."""
    if llama_cpp_unavailable(model) is None:
        return "llama.cpp"
    import hashlib

    from michi_core.model.gguf_export import write_gguf
    from michi_core.paths import cache_dir

    digest = hashlib.sha256()
    for name, tensor in sorted(model.backbone.state_dict().items()):  # the file belongs to these weights
        digest.update(name.encode())
        digest.update(tensor.float().flatten()[:4096].numpy().tobytes())
    path = cache_dir() / "backbones" / f"{model.config.preset}-{digest.hexdigest()[:12]}.q8_0.gguf"
    if not path.is_file():
        log.info("writing the backbone as a Q8_0 GGUF for llama.cpp: %s", path)
        write_gguf(model.backbone, path.with_suffix(".tmp"), "q8_0").replace(path)
    return LlamaCppRunner(path, n_ctx=model.config.backbone.max_positions)


def _copy(model: MichiModel) -> MichiModel:
    return copy.deepcopy(model)
