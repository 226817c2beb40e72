"""The backbone alone, per runner: one-position step time, prefill of 500 positions per llama.cpp batch
size, and agreement with fp32 torch (hidden-state cosine, text top-1) on a real prompt and frame inputs.

    python benchmarks/runner_bench.py [--threads 1,2] [--q8]

`michi bench` times the whole step; this separates the backbone to choose the runner's settings
(threads, n_batch, Q4_1 file vs a Q8_0 conversion). JSON to benchmarks/results/ with the load average.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from michi_core.model.backbone import resolve_gguf
from michi_core.model.config import small
from michi_core.model.model import MichiModel
from michi_core.session.bench import PROMPT, machine_info, results_dir
from michi_core.session.runner import LlamaCppRunner, TorchRunner


def load() -> float:
    return round(os.getloadavg()[0], 2)


@torch.inference_mode()
def frame_inputs(model: MichiModel, n: int) -> torch.Tensor:
    """n frame positions as the session builds them: PAD text + a latent + a listen embedding."""
    g = torch.Generator().manual_seed(0)
    fs, d = model.config.codec.frame_size, model.config.codec.latent_dim
    user = model.listen(0.05 * torch.randn(1, n * fs, generator=g))
    pad = torch.full((1, n), model.tokenizer.pad_id)
    return model.embed_frames(pad, 0.5 * torch.randn(1, n, d, generator=g), user)[0]


@torch.inference_mode()
def agreement(model: MichiModel, runner, prompt: torch.Tensor, frames: torch.Tensor) -> dict:
    reference = TorchRunner(model)
    ref = torch.cat([reference.append(prompt)] + [reference.append(f[None]) for f in frames], dim=1)
    runner.reset()
    got = torch.cat([runner.append(prompt)] + [runner.append(f[None]) for f in frames], dim=1)
    runner.reset()
    cos = torch.nn.functional.cosine_similarity(ref[0], got[0].float(), dim=-1)
    top_ref, top_got = model.text_logits(ref).argmax(-1)[0], model.text_logits(got).argmax(-1)[0]
    n = prompt.shape[0]
    return {"prompt_min_cosine": float(cos[:n].min()), "frames_min_cosine": float(cos[n:].min()),
            "median_cosine": float(cos.median()),
            "prompt_top1_agreement": float((top_ref[:n] == top_got[:n]).float().mean()),
            "frames_top1_agreement": float((top_ref[n:] == top_got[n:]).float().mean())}


@torch.inference_mode()
def step_times(runner, prompt: torch.Tensor, frames: torch.Tensor, warmup: int = 10) -> dict:
    runner.reset()
    runner.append(prompt, last_only=True)
    times = []
    for i, f in enumerate(frames):
        start = time.perf_counter()
        runner.append(f[None], last_only=True)
        if i >= warmup:
            times.append(1000 * (time.perf_counter() - start))
    runner.reset()
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)),
            "load_average_1m": load()}


@torch.inference_mode()
def prefill_ms(runner, embeds: torch.Tensor, repeats: int = 3) -> float:
    out = []
    for _ in range(repeats):
        runner.reset()
        start = time.perf_counter()
        runner.append(embeds, last_only=True)
        out.append(1000 * (time.perf_counter() - start))
    runner.reset()
    return statistics.median(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="llama.cpp thread counts to time")
    parser.add_argument("--torch-threads", type=int, default=2)
    parser.add_argument("--batches", default="512,128", help="llama.cpp n_batch values for the prefill")
    parser.add_argument("--q8", action="store_true", help="also a Q8_0 GGUF written from the torch weights")
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)
    model = MichiModel(small()).eval()
    ids = torch.tensor([model.tokenizer.encode(PROMPT)])
    with torch.inference_mode():
        prompt = model.embed_text(ids)[0]
        long_ids = torch.tensor([model.tokenizer.encode((PROMPT + " ") * 40)[:500]])
        long = model.embed_text(long_ids)[0]
    frames = frame_inputs(model, args.steps)
    files = {"q4_1": resolve_gguf(model.config.backbone.name_or_path)}
    tmp = tempfile.TemporaryDirectory()
    if args.q8:
        from michi_core.model.gguf_export import write_gguf

        files["q8_0"] = write_gguf(model.backbone, Path(tmp.name) / "small.q8_0.gguf", "q8_0")
    n_ctx = 2048
    results: dict = {"torch": {}, "llama.cpp": {}}
    for dtype in (torch.float32, torch.bfloat16):
        model.backbone.to(dtype)
        runner = TorchRunner(model)
        name = str(dtype).replace("torch.", "")
        results["torch"][name] = {"step": step_times(runner, prompt, frames),
                                  "prefill_500_ms": prefill_ms(runner, long, repeats=2)}
        print(name, results["torch"][name], flush=True)
    model.backbone.to(torch.float32)
    for label, path in files.items():
        for threads in [int(t) for t in args.threads.split(",")]:
            runner = LlamaCppRunner(path, n_ctx=n_ctx, threads=threads)
            key = f"{label}_threads{threads}"
            entry = {"step": step_times(runner, prompt, frames)}
            if threads == max(int(t) for t in args.threads.split(",")):
                entry["agreement_vs_fp32_torch"] = agreement(model, runner, prompt, frames[:40])
                for batch in [int(b) for b in args.batches.split(",")]:
                    r = LlamaCppRunner(path, n_ctx=n_ctx, threads=threads, batch_positions=batch)
                    entry[f"prefill_500_ms_batch{batch}"] = prefill_ms(r, long)
                    del r
            results["llama.cpp"][key] = entry
            print(key, entry, flush=True)
            del runner
    report = {"benchmark": "benchmarks/runner_bench.py", "machine": machine_info(torch.device("cpu")),
              "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "settings": vars(args), "results": results}
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = results_dir() / f"runner_bench_small_cpu_{stamp}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
