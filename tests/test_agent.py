"""The agent end to end on the bundled article: real Chroma, real embedder, every backend.

Generative backends talk real HTTP to a scripted OpenAI-compatible server on 127.0.0.1.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agent import REFUSAL, Agent
from agent.cite import split_claims
from citeqa.errors import BackendError, BackendUnreachableError, ConfigError, IndexMissingError, InputError
from tests.conftest import ARTICLE, FunctionBackend, free_port, text_pdf

TEXT = ARTICLE.read_text(encoding="utf-8")
RECAPTURE = "ISIL fighters had recaptured the area out by Wednesday afternoon"


def check_citations(answer) -> None:
    """The citation contract: numbered 1..n in order of first use, spans equal the document text."""
    assert [c.n for c in answer.citations] == list(range(1, len(answer.citations) + 1))
    used = [int(n) for n in re.findall(r"\[(\d+)\]", answer.answer)]
    assert list(dict.fromkeys(used)) == [c.n for c in answer.citations]
    for c in answer.citations:
        assert TEXT[c.start_char:c.end_char] == c.text
        assert len(c.text) < 400, "a citation is a sentence, not a whole document"
    for claim, markers in split_claims(answer.answer):
        assert markers, f"answer sentence without a citation: {claim!r}"


def indexed_texts(tmp_path: Path, docs: dict[str, str]) -> dict[str, Path]:
    """Write `docs` (file name -> text) into `tmp_path` and index them into the test's CITEQA_HOME."""
    from index import ingest
    from citeqa.config import Config

    paths = {name: tmp_path / name for name in docs}
    for name, path in paths.items():
        path.write_text(docs[name])
    ingest.add(list(paths.values()), Config.resolve(), progress=False)
    return paths


def test_extractive_answers_who_with_the_recapture_sentence(indexed: Path) -> None:
    answer = Agent().ask("Who retook the al-Hamdan airbase?")
    assert not answer.refused and "ISIL" in answer.answer
    assert RECAPTURE in answer.citations[0].text
    check_citations(answer)
    d = answer.to_dict()
    assert set(d) >= {"question", "answer", "refused", "citations", "latency_ms", "backend", "model"}
    assert set(d["citations"][0]) == {"n", "doc_id", "source", "chunk_id", "start_char", "end_char", "text", "score",
                                      "page"}
    assert d["citations"][0]["page"] is None  # a text file has no pages


def test_what_the_article_is_about_is_answered_by_its_title_and_first_sentence(indexed: Path) -> None:
    """"What is the article about?" asks about the document, not a fact in it: its opening answers, cited."""
    answer = Agent().ask("What is the article about?")
    assert not answer.refused and answer.confidence == 1.0 and answer.short_answer is None
    assert [c.start_char for c in answer.citations] == [0, TEXT.index("ISIL has recaptured")]
    assert answer.citations[0].text == "ISIL retakes Syria border town from US-backed rebels"
    check_citations(answer)


def test_a_question_typed_without_its_question_mark_reads_as_with_it(indexed: Path) -> None:
    """The reader was trained on questions that end in "?"; without it, the recapture sentence read "The New
    Syrian Army" for who retook the airbase."""
    agent = Agent()
    bare, asked = agent.ask("who retook the al-hamdan airbase"), agent.ask("Who retook the al-Hamdan airbase?")
    assert bare.query == "who retook the al-hamdan airbase?"
    assert bare.short_answer == asked.short_answer == "ISIL fighters", (bare.short_answer, asked.short_answer)


def test_extractive_number_question(indexed: Path) -> None:
    answer = Agent().ask("How many air strikes did the coalition carry out near al-Bukamal?")
    assert "eight" in answer.answer
    check_citations(answer)


def test_follow_up_is_resolved_against_history(indexed: Path) -> None:
    history = [{"role": "user", "content": "How many air strikes did the coalition conduct near al-Bukamal?"},
               {"role": "assistant", "content": "The US-led coalition said it had conducted eight air strikes [1]."}]
    answer = Agent().ask("And near al-Qaim?", history=history)
    assert "al-Qaim" in answer.query and "five" in answer.answer
    check_citations(answer)


def test_unanswerable_question_is_refused(indexed: Path) -> None:
    answer = Agent().ask("What is the boiling point of mercury?")
    assert answer.refused and answer.answer == REFUSAL and answer.citations == []


def test_question_about_a_place_no_document_covers_is_refused(tmp_path: Path) -> None:
    """Issue 14's case: a question about one city's castle over another city's theatre. The reader alone
    reads the theatre sentence as a fair answer (P = 0.096 over its own threshold 0.063); the judge,
    which also weighs how close the passage is to the question, refuses it."""
    indexed_texts(tmp_path, {
        "nantes.txt": "The theatre of Nantes was designed by Mathurin Crucy in 1788. It stands on the Place Graslin "
                      "and seats about 800 people. The building was restored in the 1980s after a fire.\n",
        "ferry.txt": "The Marrow Island ferry carries up to 180 passengers. It was launched at the Brekke yard in "
                     "1987.\n"})
    agent = Agent()
    for question in ("Who designed the castle of Lyon?", "When was the castle of Lyon built?"):
        answer = agent.ask(question)
        assert answer.refused and answer.citations == [], answer.answer
    assert agent.ask("Who designed the theatre of Nantes?").short_answer == "Mathurin Crucy"


def test_a_why_question_never_gets_a_bare_year_as_its_short_answer(tmp_path: Path) -> None:
    """The reader reads "1887" for "Why was the lighthouse built?"; a year is no reason, so the answer is the
    cited sentence alone."""
    indexed_texts(tmp_path, {"light.txt": "The Marrow Island Lighthouse stands on the northern tip of Marrow Island. "
                                          "It was built in 1887 by Thomas Grady, after the steamer Albion sank on "
                                          "the nearby reef.\n"})
    agent = Agent()
    why, when = agent.ask("Why was the lighthouse built?"), agent.ask("When was the lighthouse built?")
    assert not why.refused and "Albion" in why.citations[0].text
    assert why.short_answer is None or not why.short_answer.isdigit(), why.short_answer
    assert when.short_answer == "1887"


def test_a_yes_no_question_is_answered_by_its_sentence_not_by_a_span(tmp_path: Path) -> None:
    """Over "The warranty does not cover damage from lightning or water", the reader's span for "Does the
    warranty cover water damage?" is "lightning": no short answer, the cited sentence answers."""
    indexed_texts(tmp_path, {"router.txt": "The Nordlink R7 comes with a warranty of three years from the date of "
                                           "purchase. The warranty does not cover damage from lightning or water. "
                                           "Repairs under warranty are free.\n"})
    polar, open_ = Agent().ask("Does the warranty cover water damage?"), Agent().ask("How long is the warranty?")
    assert not polar.refused and polar.short_answer is None
    assert polar.answer.startswith("The warranty does not cover damage from lightning or water. [1]"), polar.answer
    assert open_.short_answer == "three years", open_.short_answer


def test_a_hard_wrapped_answer_is_on_one_line_and_its_citation_is_the_source_span(tmp_path: Path) -> None:
    """A line break inside the cited sentence is a space in `answer` and `short_answer`; the citation keeps
    the source's characters, so it still points at them. A heading is never the second sentence cited."""
    text = ("# Riverside Bike Share\n\nA single ride on a city bike costs 1.50 euros for the first 30 minutes. An\n"
            "electric bike costs 2.80\neuros for the same time. Every further 30 minutes costs 1 euro.\n")
    paths = indexed_texts(tmp_path, {"bikes.md": text})
    answer = Agent().ask("How much does an electric bike cost at Riverside Bike Share?")
    assert answer.short_answer == "2.80 euros", answer.short_answer
    assert "\n" not in answer.answer and "An electric bike costs 2.80 euros for the same time. [1]" in answer.answer
    assert [c.text for c in answer.citations] == ["An\nelectric bike costs 2.80\neuros for the same time."]
    assert paths["bikes.md"].read_text()[answer.citations[0].start_char:answer.citations[0].end_char] == \
        answer.citations[0].text


def test_a_heading_is_never_cited_as_a_second_sentence(tmp_path: Path) -> None:
    """"# Brookfield Public Library" holds the question's word "library" that the answering table row lacks,
    but a heading says nothing: the answer cites the row alone."""
    indexed_texts(tmp_path, {"library.md": "# Brookfield Public Library\n\n## Opening hours\n\n| Day | Hours |\n"
                                           "|---|---|\n| Monday to Friday | 9:00 to 20:00 |\n| Saturday | 10:00 to 16:00 |\n"
                                           "| Sunday | closed |\n\n## Borrowing\n\nMembers may borrow up to 12 items at a time.\n"})
    answer = Agent().ask("Is the library open on Sunday?")
    assert [c.text for c in answer.citations] == ["| Sunday | closed |"], answer.answer


def test_a_follow_up_reads_its_pronouns_as_what_the_previous_turn_named(tmp_path: Path) -> None:
    """The chat passes the agent's own answer as history; "she", "it" and "that town" are read as the
    person, the thing and the place of the previous turn, and `query` shows the question as read."""
    indexed_texts(tmp_path, {"orchard.txt": "The Kestrel Valley Orchard was founded in 1952 by Ruth Abbott. She "
                                            "planted 400 apple trees on the slopes above Dunmore.\n\nThe town of "
                                            "Dunmore lies on the river Esk, 30 km north of Halden. Its market is "
                                            "held every Saturday.\n"})
    agent = Agent()

    def follow(first: str, then: str):
        before = agent.ask(first)
        return agent.ask(then, history=[{"role": "user", "content": first},
                                        {"role": "assistant", "content": before.answer}])

    when = follow("Who founded the Kestrel Valley Orchard?", "When did she found it?")
    assert when.query == "When did Ruth Abbott found the Kestrel Valley Orchard?" and when.short_answer == "1952"
    river = follow("Where were the apple trees planted?", "Which river is that town on?")
    assert river.query == "Which river is Dunmore on?" and "Esk" in river.short_answer, river.answer
    market = follow("Which town lies on the river Esk?", "When is its market held?")
    assert "Saturday" in market.short_answer, (market.query, market.answer)


def test_a_chain_of_follow_ups_keeps_its_subject(tmp_path: Path) -> None:
    """Each turn is read against the turns before it as the chat sends them (the user's words and the
    agent's answers): "she" two turns on is still Marta Kovacs, a lone "When?" asks the previous question
    again, "And green?" swaps the colour, and "it" after a numeric answer is what was asked about."""
    indexed_texts(tmp_path, {"people.txt": "Marta Kovacs was born in Szeged in 1948. She studied physics at the "
                                           "University of Vienna and later worked at CERN. She retired in 2010.\n",
                             "router.txt": "The status light shows what the router is doing. A red light means that "
                                           "the router has no connection. The router comes with a warranty of three "
                                           "years. The warranty does not cover damage from lightning.\n"})
    agent = Agent()

    def chat(*questions: str):
        history: list[dict] = []
        for q in questions:
            answer = agent.ask(q, history=history)
            history += [{"role": "user", "content": q}, {"role": "assistant", "content": answer.answer}]
        return answer

    retired = chat("Where was Marta Kovacs born?", "Where did she study?", "When did she retire?")
    assert retired.query == "When did Marta Kovacs retire?" and retired.short_answer == "2010", retired.query
    assert chat("Where was Marta Kovacs born?", "When?").query == "When was Marta Kovacs born?"
    assert chat("What does a red light mean?", "And green?").query == "What does a green light mean?"
    assert chat("How long is the warranty?", "Does it cover lightning?").query == "Does the warranty cover lightning?"


def test_how_many_times_is_answered_by_twice(tmp_path: Path) -> None:
    """"twice" counts times: the answer-type check no longer refuses it as a count of the weeks beside it."""
    indexed_texts(tmp_path, {"handbook.txt": "Members may borrow up to eight books at a time. Loans last three "
                                             "weeks and can be renewed twice online.\n"})
    answer = Agent().ask("How many times can a loan be renewed?")
    assert not answer.refused and answer.short_answer and "twice" in answer.short_answer.lower(), answer.answer


def test_markdown_markup_is_not_part_of_a_short_answer(tmp_path: Path) -> None:
    """A heading's hashes are markup: the short answer leaves them out, and the cited span is the source's
    own characters (hashes included: `agent.injection` reads "### Instruction:" by them)."""
    guide = indexed_texts(tmp_path, {"guide.md": "# Nordlink R7 Router: Quick Guide\n\n## Resetting\n\n1. Hold the "
                                                 "recessed reset button for 12 seconds.\n2. Wait until the light "
                                                 "turns green.\n"})["guide.md"]
    agent = Agent()
    name, hold = agent.ask("What is the router's model name?"), agent.ask("How long do I hold the reset button?")
    assert name.short_answer and "Nordlink R7" in name.short_answer and "#" not in name.short_answer, name.answer
    assert name.answer.startswith(name.short_answer) and hold.short_answer == "12 seconds", hold.answer
    text = guide.read_text()
    for c in name.citations + hold.citations:
        assert text[c.start_char:c.end_char] == c.text, c


@pytest.mark.parametrize("question", [
    "How many journalists were wounded near al-Qaim?",  # the closest sentence counts air strikes
    "Who is the mayor of al-Bukamal?",                  # no person is named near al-Bukamal
    "What is the name of the Amaq news agency's editor?",  # the Amaq sentence names no person
])
def test_near_miss_question_without_an_answer_of_its_type_is_refused(indexed: Path, question: str) -> None:
    answer = Agent().ask(question)
    assert answer.refused and answer.citations == [], answer.answer


def test_typed_questions_keep_answers_of_the_asked_type(indexed: Path) -> None:
    agent = Agent()
    assert "five" in agent.ask("How many air strikes hit the area near al-Qaim?").answer
    assert "Rami Abdel Rahman" in agent.ask("Who is the head of the Syrian Observatory for Human Rights?").answer


@pytest.mark.parametrize("question, phrase", [
    ("When did ISIL first seize the border crossing?", "mid-2014"),
    ("Who is the head of the Syrian Observatory for Human Rights?", "Rami Abdel Rahman"),
    ("How many prisoners did ISIL take in the counteroffensive?", "15"),
])
def test_extractive_answer_leads_with_the_short_answer(indexed: Path, question: str, phrase: str) -> None:
    answer = Agent().ask(question)
    assert answer.short_answer and phrase.lower() in answer.short_answer.lower() and len(answer.short_answer) < 40
    (first, markers), _ = split_claims(answer.answer)[:2]
    assert first.rstrip(".").lower() == answer.short_answer.lower() and markers == [1]
    assert answer.short_answer.lower() in answer.citations[0].text.lower()
    check_citations(answer)


def test_confidence_and_citation_score_are_the_judges_probability(indexed: Path) -> None:
    agent = Agent()
    answered = agent.ask("Who retook the al-Hamdan airbase?")
    refused = agent.ask("When was the Marrow Island Lighthouse built?")
    assert answered.confidence >= agent.judge.threshold > refused.confidence
    assert answered.citations[0].score == pytest.approx(answered.confidence, abs=1e-3)
    assert refused.refused and refused.short_answer is None
    d = answered.to_dict()
    assert d["short_answer"] == answered.short_answer and d["confidence"] == round(answered.confidence, 4)


def test_min_confidence_refuses_what_the_calibrated_threshold_answers(indexed: Path, monkeypatch, capsys) -> None:
    """CITEQA_MIN_CONFIDENCE (or --min-confidence) replaces the calibrated threshold: an answer whose
    confidence is under the user's bar becomes "I don't know"; a bar under it answers as before."""
    from citeqa.cli import main

    first = Agent()
    question = "Who retook the al-Hamdan airbase?"
    answered = first.ask(question)
    assert not answered.refused
    strict = Agent(min_confidence=min(0.99, answered.confidence + 0.01), store=first.store, embedder=first.embedder,
                   reader=first.reader)
    refused = strict.ask(question)
    assert refused.refused and refused.answer.startswith(REFUSAL) and not refused.citations
    assert refused.confidence == pytest.approx(answered.confidence, abs=1e-6)  # same reading, higher bar
    monkeypatch.setenv("CITEQA_MIN_CONFIDENCE", f"{answered.confidence / 2:.4f}")
    assert main(["ask", question, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == answered.answer
    assert main(["ask", question, "--json", "--min-confidence", f"{min(0.99, answered.confidence + 0.01):.4f}"]) == 0
    assert json.loads(capsys.readouterr().out)["refused"] is True
    with pytest.raises(ConfigError, match="CITEQA_MIN_CONFIDENCE"):
        Agent(min_confidence=1.5, store=first.store, embedder=first.embedder, reader=first.reader)


def test_stream_yields_text_then_answer_and_is_deterministic(indexed: Path) -> None:
    agent = Agent()
    items = list(agent.stream("When did ISIL seize the border crossing?"))
    assert isinstance(items[-1], type(agent.ask("x y z"))) and all(isinstance(i, str) for i in items[:-1])
    assert "mid-2014" in items[-1].answer
    assert agent.ask("When did ISIL seize the border crossing?").answer == items[-1].answer


def test_long_question_is_truncated_with_a_warning_and_empty_is_an_error(indexed: Path) -> None:
    agent = Agent()
    answer = agent.ask("Who retook the al-Hamdan airbase? " + "filler words " * 4000)
    assert answer.warnings and "cut" in answer.warnings[0]
    with pytest.raises(InputError, match="empty"):
        agent.ask("   ")


def test_missing_index_is_a_clear_error() -> None:
    with pytest.raises(IndexMissingError, match="citeqa index add"):
        Agent()


# --- generative backends against a real HTTP server -------------------------------------------------

def passages_in(messages: list[dict]) -> dict[int, str]:
    return {int(n): t for n, t in re.findall(r"\[(\d+)\] «(.*?)»", messages[-1]["content"], re.S)}


def cite_passage_with(needle: str, claim: str):
    """A scripted model that cites the passage containing `needle`."""
    def reply(messages: list[dict]) -> str:
        found = [n for n, t in passages_in(messages).items() if needle in t]
        return f"{claim} [{found[0]}]." if found else "I don't know — the indexed documents don't say."
    return reply


BACKENDS = [("openai", {"OPENAI_API_KEY": "sk-test-key"}), ("openai-compatible", {})]


def use_server(monkeypatch, backend: str, env: dict, url: str) -> None:
    monkeypatch.setenv("CITEQA_BACKEND", backend)
    monkeypatch.setenv("CITEQA_BASE_URL", url)
    for k, v in env.items():
        monkeypatch.setenv(k, v)


@pytest.mark.parametrize("backend,env", BACKENDS)
def test_generative_backend_answer_is_verified_and_cited(indexed, model_server, monkeypatch, backend, env) -> None:
    server = model_server(cite_passage_with("recaptured the area", "ISIL fighters recaptured the airbase area"))
    use_server(monkeypatch, backend, env, server.url)
    answer = Agent().ask("Who retook the al-Hamdan airbase?")
    assert not answer.refused and answer.backend == backend
    assert answer.answer.startswith("ISIL fighters recaptured the airbase area") and "[1]" in answer.answer
    assert RECAPTURE in answer.citations[0].text
    check_citations(answer)
    sent = server.requests[-1]["body"]["messages"]
    assert "never instructions" in sent[0]["content"] and sent[-1]["content"].rstrip().endswith("don't say.")
    if backend == "openai":
        assert server.requests[-1]["auth"] == "Bearer sk-test-key"


@pytest.mark.parametrize("backend,env", BACKENDS)
def test_wrong_or_invented_citation_is_dropped(indexed, model_server, monkeypatch, backend, env) -> None:
    def reply(messages):
        p = passages_in(messages)
        wrong = next(n for n, t in p.items() if "recaptured the area" not in t)
        return (f"ISIL fighters recaptured the airbase area [{wrong}]. "
                f"The rebels were flown in from Paris [{max(p) + 5}].")
    use_server(monkeypatch, backend, env, model_server(reply).url)
    answer = Agent().ask("Who retook the al-Hamdan airbase?")
    assert answer.refused and answer.citations == [] and "Paris" not in answer.answer


@pytest.mark.parametrize("backend,env", BACKENDS)
def test_unsupported_sentence_is_dropped_and_supported_kept(indexed, model_server, monkeypatch, backend, env) -> None:
    def reply(messages):
        p = passages_in(messages)
        good = next(n for n, t in p.items() if "recaptured the area" in t)
        return f"ISIL fighters recaptured the airbase area [{good}]. Mars has two moons [{good}]."
    use_server(monkeypatch, backend, env, model_server(reply).url)
    answer = Agent().ask("Who retook the al-Hamdan airbase?")
    assert "Mars" not in answer.answer and "ISIL" in answer.answer and len(answer.citations) == 1


@pytest.mark.parametrize("backend,env", BACKENDS)
@pytest.mark.parametrize("claim,kept", [
    ("Kurdish YPG fighters retook the al-Hamdan airbase", False),  # a name the cited sentence lacks
    ("The one who retook the al-Hamdan airbase is", False),  # restates the question, answers nothing
    ("ISIL", True),  # a short answer whose words are all in the cited sentence
])
def test_claims_must_add_an_answer_grounded_in_the_cited_sentence(indexed, model_server, monkeypatch, backend, env,
                                                                  claim, kept) -> None:
    use_server(monkeypatch, backend, env, model_server(cite_passage_with("recaptured the area", claim)).url)
    answer = Agent().ask("Who retook the al-Hamdan airbase?")
    assert answer.refused is not kept
    if kept:
        assert answer.answer.startswith(claim) and RECAPTURE in answer.citations[0].text


@pytest.mark.parametrize("setting,backend,shown", [(None, "openai-compatible", 4), ("2", "openai-compatible", 2),
                                                   (None, "local", 1)])
def test_generative_prompt_holds_context_size_sentences(indexed, model_server, monkeypatch, setting, backend,
                                                        shown) -> None:
    from agent.backends.local import LocalBackend
    from agent.backends.openai import OpenAIBackend
    from citeqa.config import Config

    if setting:
        monkeypatch.setenv("CITEQA_CONTEXT_SENTENCES", setting)
    kind = LocalBackend if backend == "local" else OpenAIBackend
    assert kind.context_for(Config.resolve(backend=backend)) == shown
    server = model_server(cite_passage_with("recaptured the area", "ISIL fighters recaptured it"))
    use_server(monkeypatch, "openai-compatible", {}, server.url)
    Agent(context_sentences=shown).ask("Who retook the al-Hamdan airbase?")
    passages = passages_in(server.requests[-1]["body"]["messages"])
    assert len(passages) == shown and all(p in TEXT and len(p) < 400 for p in passages.values())  # sentences
    assert RECAPTURE in passages[1], "the best sentence comes first"


@pytest.mark.parametrize("backend,env", BACKENDS)
def test_model_refusal_is_a_refusal(indexed, model_server, monkeypatch, backend, env) -> None:
    use_server(monkeypatch, backend, env, model_server(lambda m: "Sorry, the passages do not say that.").url)
    answer = Agent().ask("What is the population of al-Bukamal?")
    assert answer.refused and answer.answer == REFUSAL


def test_generative_follow_up_is_rewritten_by_the_model(indexed, model_server, monkeypatch) -> None:
    def reply(messages):
        if "Rewrite the follow-up" in messages[-1]["content"]:
            return "How many air strikes did the coalition conduct near al-Qaim?"
        return cite_passage_with("al-Qaim", "The coalition conducted five air strikes near al-Qaim")(messages)
    use_server(monkeypatch, "openai-compatible", {}, model_server(reply).url)
    history = [{"role": "user", "content": "How many air strikes near al-Bukamal?"},
               {"role": "assistant", "content": "Eight [1]."}]
    answer = Agent().ask("And near al-Qaim?", history=history)
    assert answer.query.endswith("near al-Qaim?") and "five" in answer.answer


def test_backend_errors_name_the_fix(indexed, model_server, monkeypatch) -> None:
    monkeypatch.setenv("CITEQA_BACKEND", "openai")
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        Agent()
    use_server(monkeypatch, "openai-compatible", {}, f"http://127.0.0.1:{free_port()}/v1")
    monkeypatch.setenv("CITEQA_MODEL", "m")
    with pytest.raises(BackendUnreachableError, match="CITEQA_BASE_URL"):
        Agent().ask("Who retook the al-Hamdan airbase?")
    use_server(monkeypatch, "openai-compatible", {}, model_server(lambda m: None).url)
    with pytest.raises(BackendError, match="not an OpenAI response"):
        Agent().ask("Who retook the al-Hamdan airbase?")


PLUGIN = """
from agent.backends.generative import GenerativeBackend


class QuoteBackend(GenerativeBackend):
    \"\"\"A third-party backend: it quotes the first passage it is shown.\"\"\"

    name, model = "quote", "quote-1"

    def __init__(self, cfg):
        self.context_size = self.context_for(cfg)

    def draft(self, question, passages):
        yield f"{passages[0].text} [{passages[0].n}]"

    def rewrite(self, question, history):
        return question
"""


def test_a_backend_plugin_registered_by_entry_point_answers(indexed, tmp_path, monkeypatch, capsys) -> None:
    """A package that declares `[project.entry-points."citeqa.backends"] quote = ...` is installed (its
    module and dist-info on sys.path) and chosen by name, through the Python API and the CLI."""
    from agent.backends import registry
    from citeqa.cli import main

    (tmp_path / "citeqa_quote.py").write_text(PLUGIN)
    info = tmp_path / "citeqa_quote-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: citeqa-quote\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[citeqa.backends]\nquote = citeqa_quote:QuoteBackend\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "quote" in registry() and "extractive" in registry()
    answer = Agent(backend="quote").ask("Who retook the al-Hamdan airbase?")
    assert answer.backend == "quote" and not answer.refused and RECAPTURE in answer.citations[0].text
    assert main(["ask", "--backend", "quote", "--json", "Who retook the al-Hamdan airbase?"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "quote-1"
    with pytest.raises(ConfigError, match="one of: extractive, openai, openai-compatible, local, quote"):
        Agent(backend="qoute")


def test_cli_ask_json_and_batch(indexed, tmp_path, capsys) -> None:
    from citeqa.cli import main

    assert main(["ask", "Who retook the al-Hamdan airbase?", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert "ISIL" in d["answer"] and d["citations"][0]["n"] == 1
    batch = tmp_path / "q.jsonl"
    batch.write_text('{"id": "q1", "question": "How many air strikes near al-Bukamal?"}\n'
                     '{"id": "q2", "question": "And near al-Qaim?", "history": [{"role": "user", "content": '
                     '"How many air strikes near al-Bukamal?"}, {"role": "assistant", "content": "Eight [1]."}]}\n')
    assert main(["ask", "--batch", str(batch)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["id"] for x in lines] == ["q1", "q2"] and "five" in lines[1]["answer"]
    batch.write_text("Who retook the al-Hamdan airbase?\n\n{\"id\": \"q3\", \"question\": \"When?\", \"history\": 7}\n")
    assert main(["ask", "--batch", str(batch)]) == 1  # every line is checked before any is asked
    err = capsys.readouterr()
    assert err.out == "" and f"{batch}:3" in err.err and "Fix:" in err.err
    batch.write_text("Who retook the al-Hamdan airbase?\n")  # a plain line is the question, its id its line number
    assert main(["ask", "--batch", str(batch)]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["id"] == 1 and "ISIL" in plain["short_answer"]
    assert main(["ask", "--backend", "nope", "x"]) == 2
    assert "Fix:" in capsys.readouterr().err


def test_cli_batch_piped_into_a_reader_that_stops_early_exits_quietly(indexed, tmp_path) -> None:
    """`citeqa ask --batch q.txt | head -1`: the closed pipe ends the run without a traceback."""
    import subprocess
    import sys

    batch = tmp_path / "q.txt"
    batch.write_text("Who retook the al-Hamdan airbase?\n" * 40)
    proc = subprocess.Popen([sys.executable, "-m", "citeqa.cli", "ask", "--batch", str(batch)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert json.loads(proc.stdout.readline())["id"] == 1
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and "Traceback" not in err, err


def test_agent_code_contains_no_eval_question_text() -> None:
    """Never special-case eval questions: no question of any eval set appears in the answering code."""
    root = Path(__file__).resolve().parent.parent
    code = "\n".join(p.read_text(encoding="utf-8").lower() for d in ("agent", "index", "prompts")
                     for p in (root / d).rglob("*") if p.suffix in (".py", ".txt"))
    for suite in ("evals/article.jsonl", "evals/squad-dev/questions.jsonl", "evals/squad-dev/unanswerable.jsonl"):
        for line in (root / suite).read_text(encoding="utf-8").splitlines():
            q = json.loads(line)["user_input"].lower()
            assert q not in code, f"eval question found in code: {q}"


def test_pdf_citation_gives_its_page(tmp_path, capsys) -> None:
    """A PDF's citation carries the page its sentence starts on: in `Citation`, `to_dict`, the CLI
    ("p. 2") and the chat's source panel title."""
    import app
    from agent.cite import Passage, verify
    from citeqa.cli import main
    from index import ingest
    from citeqa.config import Config

    closed = "The Brookfield quarry closed in 1931 after a flood."
    pdf = text_pdf(tmp_path / "quarry.pdf", [["The Brookfield quarry opened in 1902.", "It employed forty men."],
                                             [closed, "Its pit became a lake."]])
    ingest.add([pdf], Config.resolve(), progress=False)
    agent = Agent()
    pages = {s.text: s.page for s in agent.retriever.search("When did the Brookfield quarry close?").sentences}
    assert pages[closed] == 2 and pages["It employed forty men."] == 1
    sentence = next(s for s in agent.retriever.search(closed).sentences if s.text == closed)
    _, citations = verify(f"{closed} [1]", [Passage(1, [sentence])], agent.embedder.encode)
    assert citations[0].page == 2 and citations[0].to_dict()["page"] == 2

    # Which sentences are cited is the reader's choice (it may add the opening sentence); each carries its page.
    answer = agent.ask("When did the Brookfield quarry close?")
    on_page = {closed: 2, "Its pit became a lake.": 2, "The Brookfield quarry opened in 1902.": 1,
               "It employed forty men.": 1}
    assert not answer.refused and closed in [c.text for c in answer.citations], answer.answer
    assert all(c.page == on_page[c.text] for c in answer.citations)
    n = next(c.n for c in answer.citations if c.text == closed)
    assert main(["ask", "When did the Brookfield quarry close?"]) == 0
    assert f"\n[{n}] quarry.pdf p. 2 chars " in capsys.readouterr().out
    chat = app.Chat(agent)
    shown = chat.render(list(chat.reply("When did the Brookfield quarry close?", [])))
    assert f"[{n}] quarry.pdf, p. 2" in [m["metadata"]["title"] for m in shown[1:]]


def test_docs_restricts_the_search_to_those_documents(indexed: Path, tmp_path: Path, capsys) -> None:
    """`docs=[...]` (CLI `--doc`) searches only those documents, in Chroma and in BM25: a question
    whose answer is in the article, scoped to another document, is refused or answered from it only."""
    from citeqa.cli import main
    from index import ingest
    from citeqa.config import Config

    other = tmp_path / "festival.txt"
    other.write_text("The Zorblat festival is held every June in Quentown. It draws big crowds to the harbour.\n")
    ingest.add([other], Config.resolve(), progress=False)
    agent = Agent()
    question = "Who retook the al-Hamdan airbase?"
    scoped = agent.retriever.search(question, docs=["festival.txt"])
    assert scoped.sentences and {s.doc_id for s in scoped.sentences} == {"festival.txt"}
    assert {c.doc_id for c in scoped.chunks} == {"festival.txt"}
    lexical = agent.retriever.search("Zorblat festival Quentown", docs=[ARTICLE.name])  # BM25 would pick festival.txt
    assert lexical.sentences and {s.doc_id for s in lexical.sentences} == {ARTICLE.name}

    answer = agent.ask(question, docs=["festival.txt"])
    assert answer.refused or {c.doc_id for c in answer.citations} == {"festival.txt"}
    assert {r["doc_id"] for r in answer.retrieved} == {"festival.txt"}
    answer = agent.ask(question, docs=[ARTICLE.name, "festival.txt"])
    assert not answer.refused and "ISIL" in answer.answer and answer.citations[0].doc_id == ARTICLE.name
    with pytest.raises(InputError, match=r"no document 'nope.txt' in collection 'citeqa'. Fix: .*`citeqa index list`"):
        agent.ask(question, docs=["nope.txt", ARTICLE.name])

    assert main(["ask", question, "--doc", "festival.txt", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert {r["doc_id"] for r in cli["retrieved"]} == {"festival.txt"}
    assert main(["ask", question, "--doc", "nope.txt"]) == 1
    assert "citeqa index list" in capsys.readouterr().err


# --- collaborators handed in (issue 17) -------------------------------------------------------------

def test_an_injected_backend_drafts_and_the_agent_still_verifies(indexed: Path) -> None:
    """A function-backed backend writes the draft; the real store, embedder and reader around it decide
    what is cited: a claim from its first passage is cited, an invented one is refused."""
    quoting = FunctionBackend(lambda q, passages: f"{passages[0].sentences[0].text} [1]")
    inventing = FunctionBackend(lambda q, passages: "Kurdish YPG fighters from Norway retook it in 1999 [1].")
    question = "Who retook the al-Hamdan airbase?"
    quoted = Agent(backend=quoting).ask(question)
    invented = Agent(backend=inventing).ask(question)
    assert quoting.calls and quoting.calls[0][0] == question
    assert not quoted.refused and quoted.backend == "function" and "ISIL" in quoted.citations[0].text
    assert invented.refused and invented.citations == [] and inventing.calls


def test_agents_share_an_open_store_embedder_and_reader(indexed: Path) -> None:
    from citeqa.config import Config

    first = Agent()
    second = Agent.from_config(Config.resolve(), store=first.store, embedder=first.embedder, reader=first.reader)
    assert (second.store, second.embedder, second.reader) == (first.store, first.embedder, first.reader)
    question = "When did ISIL first seize the border crossing?"
    assert second.ask(question).answer == first.ask(question).answer
    with pytest.raises(ConfigError, match="embedder"):
        Agent(store=first.store)


def test_a_quoted_document_sentence_saying_not_given_is_not_a_refusal(tmp_path: Path) -> None:
    """Only the refusal sentence is a refusal: a draft quoting a document's "not given" is verified and
    cited like any claim (a regex over phrases like "not given" used to refuse it)."""
    indexed_texts(tmp_path, {"harbour.txt": "The Quentown harbour permit was not given until 1903. Fishing boats "
                                            "use the east quay.\n"})
    backend = FunctionBackend(lambda q, passages: "The permit was not given until 1903 [%d]."
                              % next(p.n for p in passages if "permit" in p.text))
    answer = Agent(backend=backend).ask("When was the Quentown harbour permit given?")
    assert not answer.refused and "1903" in answer.citations[0].text
    refusing = Agent(backend=FunctionBackend(lambda q, passages: REFUSAL)).ask("When was the Quentown harbour permit given?")
    assert refusing.refused and refusing.answer == REFUSAL
