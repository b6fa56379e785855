"""Paraphrased SQuAD training questions, written by the local GGUF model (`make paraphrases`).

SQuAD questions reuse their passage's words, so a reader trained on them alone refuses questions that
say the same thing in other words. This writes, for a seeded sample of answerable questions of the
reader's *training* articles and of its *held-out* articles (the split of `citeqa.train_reader`), one
rewrite each by the model in `prompts/paraphrase.txt`, with the cosine of the two questions'
all-MiniLM-L6-v2 embeddings:

    {"qid": "...", "split": "train" | "held", "question": "...", "paraphrase": "...", "cosine": 0.83}

`usable` keeps the rewrites that changed words but not meaning, as far as a filter can tell. The file
is committed (data/paraphrases.jsonl); the `reworded` reader recipe trains on its "train" rows, and
`citeqa.train_reader` measures every reader on its "held" rows. No eval set is read.

    .venv/bin/python -m citeqa.paraphrase --train 3088 --held 400   # about 95 min on 2 cores (1.6 s a row)
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from agent.text import content_words

OUT = Path(__file__).resolve().parent.parent / "data" / "paraphrases.jsonl"
N_TRAIN, N_HELD = 3088, 400  # questions of the training and of the held-out articles (the committed file)
MIN_COSINE = 0.6    # below: the rewrite drifted (set by reading the first 45 "train" rows; the good
MAX_KEPT = 0.7      # rewrites of names, "UNFPA" -> "United Nations Population Fund", sit at 0.63-0.68)


def kind(question: str) -> str:
    """The answer type a question expects, a role ("who was the builder") counting as a name."""
    from agent.answertype import expected

    return {"person": "agent"}.get(expected(question), expected(question))


def usable(row: dict) -> bool:
    """A rewrite that is still a question of the same answer type (`agent.answertype.expected`), keeps
    at most 70 % of the question's content words and stays close in meaning. It cannot see a flipped
    relation ("followed" -> "preceded", cosine 0.91) or a drift: 5 of the first 33 usable rows are such noise.

    >>> usable({"question": "Who built the bridge?", "paraphrase": "Who was the builder of that crossing?", "cosine": 0.8})
    True
    >>> usable({"question": "What dam began to supply water in 2005?", "paraphrase": "When did the dam open?", "cosine": 0.9})
    False
    """
    q, p = set(content_words(row["question"])), set(content_words(row["paraphrase"]))
    return (row["paraphrase"].endswith("?") and 0.5 <= len(row["paraphrase"]) / len(row["question"]) <= 2.5
            and len(q & p) <= MAX_KEPT * len(q) and row["cosine"] >= MIN_COSINE
            and kind(row["paraphrase"]) == kind(row["question"]))


def load(split: str, path: Path = OUT) -> list[dict]:
    """The `usable` rows of one split ("train" or "held"); none when the file is missing."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.is_file() else []
    return [r for r in rows if r["split"] == split and usable(r)]


def sample_questions(data_dir: Path, n_train: int, n_held: int, seed: int) -> list[dict]:
    """`n_train` answerable questions of the training articles and `n_held` of the held-out ones."""
    from citeqa.train_reader import load_articles, split_articles

    held_v1, train_v1, _, _ = split_articles(*load_articles(data_dir), random.Random(seed))
    out = []
    for k, (name, arts, n) in enumerate((("held", held_v1, n_held), ("train", train_v1, n_train))):
        qs = [(qa["id"], qa["question"]) for a in arts for p in a["paragraphs"] for qa in p["qas"]]
        picked = random.Random(seed + 3000 + k).sample(qs, min(n, len(qs)))
        out += [{"qid": i, "split": name, "question": q.strip()} for i, q in picked]
    return out


def rewrite(llm, question: str, seed: int) -> str:
    from prompts import load

    out = llm.create_chat_completion(
        messages=[{"role": "system", "content": load("paraphrase")}, {"role": "user", "content": question}],
        max_tokens=60, temperature=0.7, seed=seed)
    return out["choices"][0]["message"]["content"].strip().split("\n")[0].split(" -> ")[-1].strip().strip('"')


def main(argv: list[str] | None = None) -> int:
    from agent.backends.local import load_model, resolve_model_path
    from citeqa.config import Config
    from citeqa.train_reader import DATA_DIR, log
    from index.embedding import get_embedder

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA_DIR)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--train", type=int, default=N_TRAIN, help="questions of the training articles")
    ap.add_argument("--held", type=int, default=N_HELD, help="questions of the held-out articles")
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args(argv)
    cfg = Config.resolve()
    llm, _ = load_model(resolve_model_path(cfg), 0)
    embed = get_embedder()
    rows = sample_questions(args.data, args.train, args.held, args.seed)
    done = set()
    if args.out.is_file():  # resumable: keep what an earlier run wrote
        done = {json.loads(line)["qid"] for line in args.out.read_text(encoding="utf-8").splitlines()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with args.out.open("a", encoding="utf-8") as f:
        for k, row in enumerate(rows):
            if row["qid"] in done:
                continue
            row["paraphrase"] = rewrite(llm, row["question"], args.seed + k)
            a, b = embed.encode([row["question"], row["paraphrase"]])
            row["cosine"] = round(float(a @ b), 4)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            if k % 100 == 0:
                log(f"{k}/{len(rows)} ({time.time() - t0:.0f} s) {row['question']} -> {row['paraphrase']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
