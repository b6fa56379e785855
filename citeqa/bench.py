"""`citeqa bench`: ingest, retrieval, answer and cold-start speed, and the same work through llama-index.

Everything runs in temporary homes (never ./.citeqa). Progress goes to stderr; with --json the last
stdout line is one JSON object. What is measured (docs/benchmarks.md has the figures):

* ingest_chunks_per_s: `index.ingest.add` on the docs (chunks stored / wall seconds; the encoder is
  loaded and warm first). citeqa embeds each *sentence* once and derives chunk vectors as means.
* encoder_chunks_per_s: the bare encoder (`Embedder.encode`) on the same chunk texts (same batch size);
  ingest_ratio = ingest / encoder.
* ask_p50_ms / ask_p95_ms: `Agent.ask` end to end, extractive backend, warm, on the article questions.
* retrieval_*: `Store.query` on the chunk collection holding retrieval_chunks synthetic records whose
  vectors are seeded random unit vectors (not embedded), added with collection.add in batches of
  get_max_batch_size; texts are real chunk texts, cycled.
* vs_llamaindex_speedup: (llama-index VectorStoreIndex build + CitationQueryEngine asks) / (citeqa ingest
  + asks), same docs and questions (evals/llamaindex_recipe.py).
* peak_rss_mb: max RSS of this process after the citeqa parts (before llama-index is imported);
  peak_rss_mb_total: at the end. cold_start_s: `python -m citeqa.cli ask ...` in a subprocess on an
  already-indexed home, process start to answer; cold_start_rss_mb: that process's own peak RSS.

`citeqa bench --embed-url URL` measures only the embedding server at URL (an OpenAI-compatible
/v1/embeddings, as CITEQA_EMBED_URL; CITEQA_EMBED_MODEL and CITEQA_EMBED_API_KEY apply), on the same docs:

* embed_texts_per_s: `ServerEmbedder.encode` of the docs' sentences (best of `repeats`), and
  encoder_texts_per_s the in-process encoder on the same sentences;
* ingest_sentences_per_s: `index.ingest.add` of the docs through the server (sentences stored / wall s).

A hidden scale (env CITEQA_BENCH_SCALE, or `main(args, scale=...)`) shrinks sizes for tests.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from citeqa import servers
from index.embedding import BATCH_SIZE, SERVER_BATCH
from index.ids import record_id

COLD_QUESTION = "Who retook the al-Hamdan airbase?"
QUICK_DOCS = ("1973_oil_crisis.txt", "Jacksonville,_Florida.txt")
BATCH_SIZES = (8, 16, 32, 64, 128, 256)
SEED = 1234


@dataclass
class Plan:
    quick: bool
    docs: list[Path]
    questions: list[dict]
    sizes: list[int]
    n_queries: int
    cold_runs: int
    repeats: int  # ingest / encoder timing repeats (best of)
    batch_sizes: tuple[int, ...] = ()
    sweep_docs: list[Path] = field(default_factory=list)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def make_plan(quick: bool, scale: float) -> Plan:
    from evals.runner import ARTICLE, EVALS_DIR, _read_jsonl

    squad = EVALS_DIR / "squad-dev" / "docs"
    questions = _read_jsonl(EVALS_DIR / "article.jsonl")
    if quick:
        docs = [ARTICLE] + [squad / d for d in QUICK_DOCS]
        plan = Plan(True, docs, questions[:20], [10_000], 200, 1, 1)
    else:
        docs = [ARTICLE] + sorted(squad.glob("*.txt"))
        plan = Plan(False, docs, questions, [1_000, 10_000, 100_000], 300, 3, 2, BATCH_SIZES,
                    [ARTICLE] + [squad / d for d in QUICK_DOCS])
    if scale < 1.0:
        plan.sizes = sorted({max(100, int(s * scale)) for s in plan.sizes})
        plan.questions = plan.questions[:max(3, int(len(plan.questions) * scale))]
        plan.n_queries = max(20, int(plan.n_queries * scale))
        plan.cold_runs = 1
        plan.repeats = 1
        if scale < 0.5:
            plan.docs = [ARTICLE]
            plan.batch_sizes = tuple(plan.batch_sizes[:2])
            plan.sweep_docs = [ARTICLE]
    return plan


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values, dtype=float), q)), 2)


def rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


@contextmanager
def temp_home(prefix: str) -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix=f"citeqa-bench-{prefix}-"))
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def encode_batch(embedder, batch_size: int) -> Iterator[None]:
    """Make `embedder.encode` use `batch_size` (ingest calls it with the default)."""
    cls_encode = type(embedder).encode
    embedder.encode = lambda texts, batch_size=batch_size: cls_encode(embedder, texts, batch_size)
    try:
        yield
    finally:
        del embedder.encode


# -- pieces -------------------------------------------------------------------------------------------
def chunk_texts(docs: list[Path], cfg) -> tuple[list[str], list[str]]:
    """The texts of the docs' chunks and of their sentences, as ingest makes them."""
    from index.ingest import prepare
    from index.loaders import discover, load_file

    chunks, sents = [], []
    for file, doc_id in discover(docs):
        c, s = prepare(load_file(file, doc_id=doc_id), cfg)
        chunks += [r["text"] for r in c]
        sents += [r["text"] for r in s]
    return chunks, sents


def time_encoder(embedder, texts: list[str], repeats: int, batch_size: int = BATCH_SIZE) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        embedder.encode(texts, batch_size=batch_size)
        best = min(best, time.perf_counter() - t0)
    return best


def time_ingest(docs: list[Path], cfg_kwargs: dict, repeats: int) -> tuple[float, int, Path, Any]:
    """Best-of wall seconds for ingest.add into a fresh collection; returns the last home (kept)."""
    from index import ingest
    from citeqa.config import Config

    best, chunks, kept = float("inf"), 0, None
    for i in range(repeats):
        if kept is not None and not cfg_kwargs.get("chroma_url"):
            shutil.rmtree(kept, ignore_errors=True)
        home = Path(tempfile.mkdtemp(prefix="citeqa-bench-ingest-"))
        cfg = Config.resolve(home=str(home), collection=f"bench-{i}-{os.getpid()}", **cfg_kwargs)
        t0 = time.perf_counter()
        report = ingest.add(list(docs), cfg, progress=False)
        best = min(best, time.perf_counter() - t0)
        chunks, kept = report.chunks_added, home
        last_cfg = cfg
    return best, chunks, kept, last_cfg


def time_asks(agent, questions: list[dict]) -> list[float]:
    agent.ask(questions[0]["user_input"])  # warm: BM25 build, first query
    out = []
    for row in questions:
        t0 = time.perf_counter()
        agent.ask(row["user_input"], history=row.get("history") or None)
        out.append((time.perf_counter() - t0) * 1000)
    return out


# The cold ask reports its own peak RSS: getrusage(RUSAGE_CHILDREN) would report this process's, which a
# child started by vfork inherits (Linux keeps the high-water mark of the memory it replaced at exec).
COLD_ASK = ("import sys, resource\nfrom citeqa.cli import main\nrc = main(['ask', sys.argv[1]])\n"
            "try:\n    rss = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
            "except OSError:\n    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "print(f'COLD_RSS_KB {rss}', file=sys.stderr)\nsys.exit(rc)\n")


def cold_start(home: Path, collection: str, runs: int) -> tuple[list[float], float]:
    """Seconds of each cold `citeqa ask` (process start to answer) and the largest peak RSS (MB)."""
    env = {**os.environ, "CITEQA_HOME": str(home), "CITEQA_COLLECTION": collection, "CITEQA_BACKEND": "extractive"}
    env.pop("CITEQA_CHROMA_URL", None)
    out, rss = [], 0.0
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", COLD_ASK, COLD_QUESTION], env=env, cwd=str(home),
                              capture_output=True, text=True, timeout=300)
        out.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise RuntimeError(f"cold-start ask failed ({proc.returncode}): {proc.stderr[-500:]}")
        rss = max([rss] + [int(line.split()[1]) / 1024 for line in proc.stderr.splitlines()
                           if line.startswith("COLD_RSS_KB ")])
    return out, rss


def synthetic_scale(cfg, embedder, sizes: list[int], n_queries: int, texts: list[str]) -> list[dict]:
    """Grow a chunk collection of random unit vectors to each size; time Store.query at each."""
    from index.store import Store

    store = Store(cfg, embedder.name, embedder.dim)
    rng = np.random.default_rng(SEED)
    per_doc, sha = 100, "0" * 64
    shas = {f"syn-{d:05d}": sha for d in range(max(sizes) // per_doc + 1)}
    queries = rng.standard_normal((n_queries + 10, embedder.dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    have, out = 0, []
    batch = store.max_batch
    for size in sizes:
        t0 = time.perf_counter()
        while have < size:
            n = min(batch, size - have)
            vecs = rng.standard_normal((n, embedder.dim)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            ids = range(have, have + n)
            store.chunks.add(
                ids=[record_id(f"syn-{i // per_doc:05d}", sha, "c", i % per_doc) for i in ids], embeddings=vecs,
                documents=[texts[i % len(texts)] for i in ids],
                metadatas=[{"doc_id": f"syn-{i // per_doc:05d}", "source": "synthetic", "sha256": sha,
                            "start_char": 0, "end_char": len(texts[i % len(texts)]), "chunk_index": i % per_doc}
                           for i in ids])
            have += n
        add_s = time.perf_counter() - t0
        for q in queries[:10]:
            store.query("chunks", q, 10, shas)
        lat = []
        for q in queries[10:]:
            t1 = time.perf_counter()
            store.query("chunks", q, 10, shas)
            lat.append((time.perf_counter() - t1) * 1000)
        out.append({"chunks": size, "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "add_s": round(add_s, 2),
                    "batch": batch})
        log(f"retrieval at {size} chunks: p50 {out[-1]['p50_ms']} ms, p95 {out[-1]['p95_ms']} ms "
            f"(added in {add_s:.1f} s, batches of {batch})")
    return out


@contextmanager
def chroma_server() -> Iterator[str]:
    """A `chroma run` server over a temporary folder for the length of a `with` block; yields its URL."""
    path = Path(tempfile.mkdtemp(prefix="citeqa-bench-server-"))
    try:
        proc, url = servers.start_chroma(path, seconds=60)
        try:
            yield url
        finally:
            servers.stop(proc, 15)
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- plots --------------------------------------------------------------------------------------------
def plot(result: dict, folder: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no plots (pip install 'citeqa[bench]')")
        return []
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    scale = result.get("retrieval_scale") or []
    if scale:
        fig, ax = plt.subplots(figsize=(6, 4))
        for rows, label in ((scale, "persistent"), (result.get("server_retrieval_scale") or [], "chroma run server")):
            if rows:
                xs = [r["chunks"] for r in rows]
                ax.plot(xs, [r["p50_ms"] for r in rows], "o-", label=f"p50 ({label})")
                ax.plot(xs, [r["p95_ms"] for r in rows], "s--", label=f"p95 ({label})")
        ax.axhline(20, color="grey", lw=0.8, ls=":", label="target p95 20 ms")
        ax.set_xscale("log")
        written.append(_save(fig, ax, folder / "bench-retrieval-latency.png", "Retrieval latency vs corpus size",
                             "chunks in the collection (synthetic random vectors)", "Store.query latency, ms (top 10)"))
    sweep = result.get("batch_sweep") or []
    if sweep:
        fig, ax = plt.subplots(figsize=(6, 4))
        xs = [r["batch_size"] for r in sweep]
        ax.plot(xs, [r["ingest_chunks_per_s"] for r in sweep], "o-", label="citeqa ingest (sentences, mean)")
        ax.plot(xs, [r["encoder_chunks_per_s"] for r in sweep], "s--", label="raw encode() of chunk texts")
        ax.set_xscale("log", base=2)
        written.append(_save(fig, ax, folder / "bench-ingest-batch.png", "Ingest throughput vs batch size",
                             "encode batch_size", "chunks per second"))
    return written


def _save(fig, ax, path: Path, title: str, xlabel: str, ylabel: str) -> str:
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


# -- main ---------------------------------------------------------------------------------------------
def run(plan: Plan, with_server: bool = False) -> dict:
    from agent import Agent
    from citeqa.config import Config
    from index.embedding import get_embedder

    t_all = time.perf_counter()
    r: dict[str, Any] = {"mode": "quick" if plan.quick else "full", "docs": [p.name for p in plan.docs],
                         "questions": len(plan.questions), "cpus": os.cpu_count()}
    log(f"{r['mode']} run: {len(plan.docs)} docs, {len(plan.questions)} questions, retrieval at {plan.sizes}")
    t0 = time.perf_counter()
    embedder = get_embedder()
    embedder.encode(["warm up"])
    embedder.load_transformers()  # a long-running process's batch path, which the encoder baseline times
    embedder.encode(["warm up"] * 16)
    import chromadb  # noqa: F401  (imported once up front: not part of the first ingest's time)

    r["encoder_load_s"] = round(time.perf_counter() - t0, 2)

    # ingest vs raw encoder
    texts, sents = chunk_texts(plan.docs, Config.resolve(home=tempfile.gettempdir()))
    n_sents = len(sents)
    r["chunks"], r["sentences"] = len(texts), n_sents
    log(f"encoder baseline: encode() of {len(texts)} chunk texts")
    enc_s = time_encoder(embedder, texts, plan.repeats)
    r["encoder_chunks_per_s"] = round(len(texts) / enc_s, 2)
    log(f"ingest: index.ingest.add of {len(plan.docs)} docs ({n_sents} sentences)")
    ing_s, n_chunks, home, cfg = time_ingest(plan.docs, {}, plan.repeats)
    r["ingest_s"] = round(ing_s, 3)
    r["ingest_chunks_per_s"] = round(n_chunks / ing_s, 2)
    r["ingest_ratio"] = round(r["ingest_chunks_per_s"] / r["encoder_chunks_per_s"], 3)
    log(f"ingest {r['ingest_chunks_per_s']} chunks/s vs encoder {r['encoder_chunks_per_s']} chunks/s")
    try:
        # ask
        agent = Agent(config=cfg)
        log(f"ask: {len(plan.questions)} article questions, warm")
        asks = time_asks(agent, plan.questions)
        r["ask_p50_ms"], r["ask_p95_ms"] = pct(asks, 50), pct(asks, 95)
        r["ask_total_s"] = round(sum(asks) / 1000, 3)
        log(f"ask p50 {r['ask_p50_ms']} ms, p95 {r['ask_p95_ms']} ms")
        del agent
        # cold start
        log(f"cold start: {plan.cold_runs} x `python -m citeqa.cli ask`")
        colds, cold_rss = cold_start(home, cfg.collection, plan.cold_runs)
        r["cold_start_s"] = round(statistics.median(colds), 3)
        r["cold_start_runs_s"] = [round(c, 3) for c in colds]
        r["cold_start_rss_mb"] = round(cold_rss, 1)
    finally:
        shutil.rmtree(home, ignore_errors=True)

    # ingest throughput vs encode batch size
    if plan.batch_sizes:
        sweep_texts, _ = chunk_texts(plan.sweep_docs, cfg)
        r["batch_sweep"] = []
        for bs in plan.batch_sizes:
            with encode_batch(embedder, bs):
                s, n, h, _ = time_ingest(plan.sweep_docs, {}, 1)
            shutil.rmtree(h, ignore_errors=True)
            e = time_encoder(embedder, sweep_texts, 1, bs)
            r["batch_sweep"].append({"batch_size": bs, "ingest_chunks_per_s": round(n / s, 2),
                                     "encoder_chunks_per_s": round(len(sweep_texts) / e, 2)})
            log(f"batch {bs}: ingest {r['batch_sweep'][-1]['ingest_chunks_per_s']} chunks/s, "
                f"encoder {r['batch_sweep'][-1]['encoder_chunks_per_s']} chunks/s")

    # retrieval at scale
    with temp_home("scale") as sh:
        scale = synthetic_scale(Config.resolve(home=str(sh), collection="bench-scale"), embedder, plan.sizes,
                                plan.n_queries, texts)
    r["retrieval_scale"] = scale
    r["retrieval_chunks"] = scale[-1]["chunks"]
    r["retrieval_p50_ms"], r["retrieval_p95_ms"] = scale[-1]["p50_ms"], scale[-1]["p95_ms"]
    r["retrieval_vectors"] = "synthetic: seeded random unit vectors (not embedded), real chunk texts cycled"

    # the same against a `chroma run` server
    if with_server:
        with chroma_server() as url:
            log(f"chroma server at {url}")
            s, n, h, scfg = time_ingest(plan.docs, {"chroma_url": url}, 1)
            shutil.rmtree(h, ignore_errors=True)
            r["server_ingest_chunks_per_s"] = round(n / s, 2)
            agent = Agent(config=scfg)
            asks = time_asks(agent, plan.questions)
            r["server_ask_p50_ms"], r["server_ask_p95_ms"] = pct(asks, 50), pct(asks, 95)
            del agent
            log(f"server ask p50 {r['server_ask_p50_ms']} ms, p95 {r['server_ask_p95_ms']} ms")
            sscale = synthetic_scale(Config.resolve(home=tempfile.gettempdir(), chroma_url=url,
                                                    collection="bench-scale"), embedder, plan.sizes,
                                     plan.n_queries, texts)
            r["server_retrieval_scale"] = sscale
            r["server_retrieval_p50_ms"], r["server_retrieval_p95_ms"] = sscale[-1]["p50_ms"], sscale[-1]["p95_ms"]
    r["peak_rss_mb"] = rss_mb()

    # the llama-index recipe, same docs and questions
    log("llama-index: VectorStoreIndex + CitationQueryEngine on the same docs and questions")
    from evals.llamaindex_recipe import RecipeAgent, embed_model
    from index.loaders import discover, load_file

    t0 = time.perf_counter()
    embed_model().get_text_embedding("warm up")
    r["llamaindex_load_s"] = round(time.perf_counter() - t0, 2)
    docs = []
    for file, doc_id in discover(plan.docs):
        d = load_file(file, doc_id=doc_id)
        docs.append((d.doc_id, d.source, d.text))
    with temp_home("llamaindex") as lh:
        recipe = RecipeAgent(Config.resolve(home=str(lh), collection="bench-li"), documents=docs)
        r["llamaindex_ingest_s"] = round(recipe.build(), 3)
        recipe.ask(plan.questions[0]["user_input"])
        li_asks = [recipe.ask(row["user_input"]).latency_ms for row in plan.questions]
    r["llamaindex_ask_p50_ms"], r["llamaindex_ask_p95_ms"] = pct(li_asks, 50), pct(li_asks, 95)
    theirs = r["llamaindex_ingest_s"] + sum(li_asks) / 1000
    ours = r["ingest_s"] + r["ask_total_s"]
    r["vs_llamaindex_speedup"] = round(theirs / ours, 3)
    log(f"llama-index ingest {r['llamaindex_ingest_s']} s, ask p50 {r['llamaindex_ask_p50_ms']} ms; "
        f"speedup {r['vs_llamaindex_speedup']}x")
    r["peak_rss_mb_total"] = rss_mb()
    r["bench_s"] = round(time.perf_counter() - t_all, 1)
    return r


def run_embed_server(plan: Plan, url: str) -> dict:
    """Embedding throughput against the server at `url` (see the module docstring)."""
    from citeqa.config import Config
    from index.embedding import ServerEmbedder, get_embedder

    cfg = Config.resolve(embed_url=url)
    server = ServerEmbedder(cfg.embed_url, cfg.embed_model, cfg.embed_api_key, cfg.timeout_s)
    _, sents = chunk_texts(plan.docs, cfg)
    r: dict[str, Any] = {"mode": "embed-server", "embed_url": server.url, "embed_model": server.name,
                         "embed_dim": server.dim, "docs": [p.name for p in plan.docs], "sentences": len(sents)}
    log(f"{server.name} ({server.dim}-d) at {server.url}: encode() of {len(sents)} sentences")
    r["embed_texts_per_s"] = round(len(sents) / time_encoder(server, sents, plan.repeats, SERVER_BATCH), 2)
    log(f"server {r['embed_texts_per_s']} texts/s; in-process encoder on the same sentences")
    local = get_embedder()
    local.load_transformers()
    local.encode(["warm up"] * 16)
    r["encoder_texts_per_s"] = round(len(sents) / time_encoder(local, sents, plan.repeats), 2)
    s, _, home, _ = time_ingest(plan.docs, {"embed_url": url}, 1)
    shutil.rmtree(home, ignore_errors=True)
    r["ingest_sentences_per_s"] = round(len(sents) / s, 2)
    log(f"ingest through the server: {r['ingest_sentences_per_s']} sentences/s")
    return r


HEADLINE = ("ingest_chunks_per_s", "encoder_chunks_per_s", "ingest_ratio", "ask_p50_ms", "ask_p95_ms",
            "retrieval_chunks", "retrieval_p50_ms", "retrieval_p95_ms", "vs_llamaindex_speedup", "peak_rss_mb",
            "cold_start_s", "server_ask_p50_ms", "server_ask_p95_ms", "server_retrieval_p50_ms",
            "server_retrieval_p95_ms", "bench_s", "embed_model", "embed_texts_per_s", "encoder_texts_per_s",
            "ingest_sentences_per_s")


def main(args: argparse.Namespace, scale: float | None = None) -> int:
    if scale is None:
        scale = float(os.environ.get("CITEQA_BENCH_SCALE") or 1.0)
    plan = make_plan(bool(getattr(args, "quick", False)), scale)
    if getattr(args, "embed_url", None):
        result = run_embed_server(plan, args.embed_url)
    else:
        result = run(plan, with_server=bool(getattr(args, "chroma_server", False)))
    if getattr(args, "plots", None):
        result["plots"] = plot(result, Path(args.plots))
        for p in result["plots"]:
            log(f"wrote {p}")
    if getattr(args, "json", False):
        print(json.dumps(result))
    else:
        for key in HEADLINE:
            if key in result:
                print(f"{key:>26}: {result[key]}")
    return 0


__all__ = ["main", "run", "make_plan", "plot"]
