"""RAG benchmark: ingest throughput (pages/s), retrieval latency, recall@k on the test questions.

    .venv/bin/python benchmarks/rag_bench.py [--pages 60] [--repeats 5]

Ingests the test corpus (tests/data/rag/corpus) and one long PDF made of its PDF pages repeated
to --pages pages, into a fresh database; times the embedder's cold load separately from the
warm ingest; measures recall@k on the corpus alone (tests/data/rag/questions.json), then times
every question through the retriever and the context injector with the long PDF in the store.
Writes benchmarks/results/rag_<timestamp>.json with the machine info.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from pypdf import PdfReader, PdfWriter

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script from a checkout, installed or not

from michi_core.session.bench import machine_info  # noqa: E402
from michi_core.stores.rag import ContextInjector, DocumentStore, Ingestor, Retriever, default_embedder  # noqa: E402

DATA = REPO / "tests" / "data" / "rag"
RESULTS = REPO / "benchmarks" / "results"


def long_pdf(path: Path, pages: int) -> Path:
    """The corpus PDFs' pages cycled to `pages` pages: real text pages, any length."""
    sources = [page for pdf in sorted((DATA / "corpus").glob("*.pdf")) for page in PdfReader(pdf).pages]
    writer = PdfWriter()
    for index in range(pages):
        writer.add_page(sources[index % len(sources)])
    writer.add_metadata({"/Title": f"Benchmark document, {pages} pages"})
    writer.write(path)
    return path


def milliseconds(values: list[float]) -> dict:
    array = np.asarray(values) * 1000
    return {"p50_ms": float(np.percentile(array, 50)), "p95_ms": float(np.percentile(array, 95)),
            "mean_ms": float(array.mean()), "n": len(values)}


def recall_at(retriever: Retriever, questions: list[dict], ks: tuple[int, ...]) -> dict:
    hits = dict.fromkeys(ks, 0)
    for question in questions:
        passages = retriever.search(question["question"], limit=max(ks))
        for k in ks:
            hits[k] += any(Path(p.path).name == question["document"]
                           and question["answer"].lower() in " ".join(p.text.split()).lower()
                           for p in passages[:k])
    return {f"recall_at_{k}": hits[k] / len(questions) for k in ks}


def time_queries(retriever: Retriever, embedder, questions: list[dict], repeats: int) -> dict:
    """Latency of a top-5 search, of one injection (a fresh call each time) and of the query's
    embedding alone, over every question `repeats` times."""
    search, inject, embed = [], [], []
    for _ in range(repeats):
        for question in questions:
            text = question["question"]
            started = time.perf_counter()
            retriever.search(text, limit=5)
            search.append(time.perf_counter() - started)
            injector = ContextInjector(retriever)
            started = time.perf_counter()
            injector.inject(text)
            inject.append(time.perf_counter() - started)
            started = time.perf_counter()
            embedder.embed([text])
            embed.append(time.perf_counter() - started)
    return {"search_top5": milliseconds(search), "inject": milliseconds(inject),
            "query_embedding": milliseconds(embed)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=60, help="pages of the long PDF")
    parser.add_argument("--repeats", type=int, default=5, help="passes over the questions when timing")
    parser.add_argument("--json", type=Path, help="output path (default benchmarks/results/rag_<time>.json)")
    args = parser.parse_args()
    questions = json.loads((DATA / "questions.json").read_text())["questions"]
    embedder = default_embedder()

    started = time.perf_counter()
    embedder.embed(["warm up"])
    first_load_s = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as tmp, DocumentStore(Path(tmp) / "bench.sqlite3") as store:
        ingestor = Ingestor(store, embedder)
        started = time.perf_counter()
        corpus = ingestor.ingest(sorted((DATA / "corpus").iterdir()))
        corpus_s = time.perf_counter() - started
        assert all(r.status == "indexed" for r in corpus), [(r.path.name, r.message) for r in corpus]
        retriever = Retriever(store, embedder)
        # Before the long PDF, whose repeated pages would hold the same answers under another name.
        quality = recall_at(retriever, questions, (1, 3, 5))

        pdf = long_pdf(Path(tmp) / "long.pdf", args.pages)
        words_per_page = statistics.mean(len((page.extract_text() or "").split())
                                         for page in PdfReader(pdf).pages)
        started = time.perf_counter()
        (long_result,) = ingestor.ingest([pdf])
        long_s = time.perf_counter() - started
        assert long_result.status == "indexed", long_result.message

        retriever.search("warm the vector index")
        (chunk_count,) = store.db.execute("SELECT COUNT(*) FROM chunks").fetchone()
        default_threads = torch.get_num_threads()
        # One thread as well: on a busy CPU (a call's model stepping beside it) torch's intra-op
        # threads wait on each other and a 10 ms query can take half a second.
        latency = {}
        for threads in sorted({default_threads, 1}, reverse=True):
            torch.set_num_threads(threads)
            latency[f"torch_threads_{threads}"] = time_queries(retriever, embedder, questions, args.repeats)
        torch.set_num_threads(default_threads)

    result = {
        "benchmark": "rag",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(torch.device("cpu")),
        "load_average_1_5_15": os.getloadavg(),  # a shared machine's other work slows every number
        "embedder": embedder.name,
        "chunking": dataclasses.asdict(ingestor.chunking),
        "embedder_first_load_s": first_load_s,
        "ingest": {
            "long_pdf_pages": args.pages,
            "long_pdf_words_per_page": words_per_page,  # a dense printed page has ~500: scale pages/s by it
            "long_pdf_chunks": long_result.chunk_count,
            "long_pdf_seconds": long_s,
            "pages_per_s": args.pages / long_s,
            "chunks_per_s": long_result.chunk_count / long_s,
            "corpus_files": len(corpus),
            "corpus_seconds": corpus_s,
        },
        "retrieval": {"store_chunks": chunk_count, **latency},
        "quality": {"questions": len(questions), **quality},
    }
    output = args.json or RESULTS / f"rag_{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    searches = {name: (round(times["search_top5"]["p50_ms"], 1), round(times["search_top5"]["p95_ms"], 1))
                for name, times in latency.items()}
    print(json.dumps({"pages_per_s": round(result["ingest"]["pages_per_s"], 2), "search_p50_p95_ms": searches,
                      **{k: round(v, 3) for k, v in quality.items()}, "written": str(output)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
