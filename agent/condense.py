"""Resolve a follow-up against the conversation, deterministically (generative backends ask the model).

In order: a lone question word swaps the previous question's ("When?" after "Who founded the orchard?"
reads "When founded the orchard?"); a fragment that starts with a preposition swaps the previous
question's phrase after it ("And near Paris?"); one that ends in a noun of the previous question swaps
that noun phrase ("And an electric bike?", `swap_head`), and a lone adjective swaps its one adjective
("And green?", `swap_modifier`); other short fragments are appended to the previous question. A full
question has its pronouns and "that <noun>" replaced by what they point at (`resolve`: "When did she
found it?" -> "When did Ruth Abbott found the Kestrel Valley Orchard?"). A question still left with
fewer than three content words and a pronoun gets the previous turn's names added to the retrieval
query only. The previous question is itself first read against the turns before it (up to `DEPTH`), so
a chain of follow-ups keeps its subject.

>>> h = [{"role": "user", "content": "How many bridges cross the river near Lyon?"},
...      {"role": "assistant", "content": "Twelve [1]."}]
>>> condense("And near Paris?", h)
('How many bridges cross the river near Paris?', '')
>>> condense("What did she say about the vote?", [{"role": "user", "content": "Who chairs the council?"},
...      {"role": "assistant", "content": "Ada Moreau chairs it [1]."}])
('What did Ada Moreau say about the vote?', '')
"""

from __future__ import annotations

import re

from agent.answertype import expected, is_person_name, parse
from agent.cite import MARKER
from agent.text import STOPWORDS, content_words, has_number, has_time
from prompts import REFUSAL

_LEAD = re.compile(r"^\s*(and|but|so|also|then)?\s*(what|how)\s+about\s+|^\s*(and|but|also)\s+", re.I)
_PREP = ("near", "in", "at", "on", "from", "to", "during", "after", "before", "by", "for", "with", "of",
         "into", "inside", "outside", "around", "against")
_PRONOUN = re.compile(r"\b(he|she|they|him|her|them|his|hers|their|it|its|this|that|these|those|there|"
                      r"the (group|city|town|country|man|woman|organisation|organization|agency|attack))\b", re.I)
_WH = re.compile(r"^\s*(who|whom|whose|what|when|where|which|why|how|is|are|was|were|did|does|do|can|could)\b",
                 re.I)
_REF = re.compile(r"\b(?:(?:that|this) ([a-z]+)|he|she|him|his|her|it|its|they|them|their)\b", re.I)
_PERSONAL = ("he", "she", "him", "his", "her")
_PLACES = frozenset("town city village country province region area place state island district".split())
_TIMES = frozenset("time moment morning afternoon evening night day week weekend month year decade century "
                   "season".split())
_EXPLETIVE = re.compile(r"\b(is|was) it (called|known|true|possible|likely)\b|"
                        r"\bit (is|was|'s) (\w+ )?(that|to|called|known)\b", re.I)  # "What is it called when ..."
_WHERE_HOW = re.compile(r"^\s*(where|when|how|why)\b", re.I)
_ASKS = re.compile(r"^\s*(who|whom|what|when|where|which|why|how(?: (?:many|much|long|far|old|often))?)\b", re.I)
DEPTH = 3  # earlier turns read to make the previous question standalone (a chain of follow-ups)
_NAME = re.compile(r"(?:[A-Z][\w’'-]*|al-[A-Z][\w-]*)(?:\s+(?:of\s+the\s+|of\s+|for\s+)?(?:[A-Z][\w’'-]*|al-[A-Z][\w-]*))*")


def _last(history: list[dict], role: str) -> str:
    for turn in reversed(history):
        if turn.get("role") == role and turn.get("content"):
            return str(turn["content"])
    return ""


def names(text: str) -> list[str]:
    """Capitalised phrases (a crude named-entity list), less the function words that open them
    ("At a base in al-Tanf" -> "al-Tanf"; "Which Kurdish group" -> "Kurdish")."""
    out = []
    for m in _NAME.finditer(text):
        phrase = m.group().split()
        while phrase and (phrase[0].lower() in STOPWORDS or _WH.match(phrase[0])):
            phrase = phrase[1:]
        if phrase and " ".join(phrase) not in out:
            out.append(" ".join(phrase))
    return out


def answer_phrase(content: str) -> str:
    """What an assistant turn answered before its first citation ("ISIL. [1] The group ..." -> "ISIL"),
    when that is a phrase of at most eight words; "" for a sentence (a finite verb) or a refusal."""
    head = MARKER.split(content, maxsplit=1)[0].strip().rstrip(".").strip()
    if not head or head.startswith(REFUSAL.split(" — ")[0]) or len(head.split()) > 8:
        return ""
    finite = any(t.tag_ in ("VBD", "VBP", "VBZ", "MD") for t in parse(head))  # "Ada Moreau chairs it"
    return "" if finite else head


def _person(text: str) -> str:
    """The first person's name in `text` ("Ada Moreau chairs it" -> "Ada Moreau"), or ""."""
    return next((e.text for e in parse(text).ents if is_person_name(e)), "")


def _topic(question: str) -> str:
    """What the question is about: its first noun phrase that is neither the question word nor a
    pronoun ("Where is the next meeting?" -> "the next meeting")."""
    for chunk in parse(question).noun_chunks:
        toks = [t for t in chunk if not (_WH.match(t.text) or t.lower_ in ("many", "much"))]
        if toks and toks[-1].pos_ != "PRON" and toks[-1].ent_type_ not in ("DATE", "TIME"):
            return " ".join(t.text for t in toks)
    return ""


def _place(prev_q: str, prev_a: str) -> str:
    """The place a "that town" points at: a name after "in/at/near/from" in the previous answer, then
    in the previous question, else the previous answer's first name."""
    for text in (prev_a, prev_q):
        m = re.search(r"\b(?:in|at|near|from) ((?:al-)?[A-Z][\w’'-]*(?: [A-Z][\w’'-]*)*)", text)
        if m:
            return m.group(1)
    return (names(prev_a) or [""])[0]


def swap_head(fragment: str, prev_q: str) -> str:
    """The previous question with its noun phrase that ends in the fragment's last word replaced by the
    fragment (at most five words); "" when the previous question has no such phrase.

    >>> swap_head("an electric bike?", "How much does a city bike cost per day?")
    'How much does an electric bike cost per day?'
    >>> swap_head("the ferry?", "How much does a city bike cost per day?")
    ''
    """
    body = fragment.rstrip("?").strip()
    if not body or len(body.split()) > 5:
        return ""
    toks = list(re.finditer(r"[\w’'-]+", prev_q))
    head = body.split()[-1].lower()
    at = next((i for i, t in enumerate(toks) if t.group().lower() in (head, head + "s")), None)
    if at is None:
        return ""
    first = at
    while first > 0 and at - first < 3 and toks[first - 1].group().lower() not in STOPWORDS:
        first -= 1  # its modifiers ("city bike")
    if first > 0 and toks[first - 1].group().lower() in ("a", "an", "the", "this", "that"):
        first -= 1
    return prev_q[:toks[first].start()] + body + prev_q[toks[at].end():]


def swap_modifier(fragment: str, prev_q: str) -> str:
    """The previous question with its one adjective replaced by the fragment, a single word that reads as
    an adjective in its place; "" otherwise.

    >>> swap_modifier("green?", "What does a red status light mean?")
    'What does a green status light mean?'
    >>> swap_modifier("Paris?", "What does a red status light mean?"), swap_modifier("green?", "How many bridges are there?")
    ('', '')
    """
    word = fragment.rstrip("?").strip()
    adjectives = [t for t in parse(prev_q) if t.pos_ == "ADJ" and t.dep_ == "amod"
                  and t.lower_ not in ("many", "much", "few", "other")]
    if len(word.split()) != 1 or len(adjectives) != 1:
        return ""
    old = adjectives[0]
    swapped = prev_q[:old.idx] + word + prev_q[old.idx + len(old.text):]
    new = next((t for t in parse(swapped) if t.idx == old.idx), None)
    return swapped if new is not None and new.pos_ == "ADJ" and new.dep_ == "amod" else ""


def resolve(question: str, prev_q: str, prev_a: str, earlier: tuple[str, ...] = ()) -> str:
    """The follow-up with its pronouns ("he", "its") and "that/this <noun>" replaced by what they point at
    in the previous turn; the question itself when nothing fits.

    - he / she / him / his / her: the person the previous answer, else the previous question, names,
      else the latest of the `earlier` turns' texts (newest first) that names one;
    - it / its / they / them / their / that <thing>: the previous answer, when the previous question asked
      which thing or who (and the answer is no person, number or date: "What is the warranty?" answered
      "Three years" makes "Does it cover water?" ask about the warranty), else what the previous question
      was about;
    - that <place noun>: the place the previous turn names (`_place`).

    >>> resolve("When did she found it?", "Who founded the Kestrel Valley Orchard?", "Ruth Abbott. [1] ...")
    'When did Ruth Abbott found the Kestrel Valley Orchard?'
    >>> resolve("When is it?", "Where is the next meeting?", "11 April at the library. [1] ...")
    'When is the next meeting?'
    >>> resolve("How long is its warranty?", "Which router is this guide for?", "Nordlink R7. [1] ...")
    "How long is Nordlink R7's warranty?"
    >>> resolve("What was built in that town this year?", "Where did she plant the trees?",
    ...         "On the slopes above Dunmore, a market town [1].")
    'What was built in Dunmore this year?'
    >>> resolve("What is it called when people rebel?", "Who led the revolt?", "Spartacus. [1] ...")
    'What is it called when people rebel?'
    >>> resolve("Does it cover water damage?", "What is the warranty on the R7?", "Three years. [1] ...")
    'Does the warranty cover water damage?'
    """
    if not _REF.search(question) or _EXPLETIVE.search(question):
        return question  # nothing to resolve: no spaCy parse of the turn
    phrase, answer = answer_phrase(prev_a), MARKER.sub("", prev_a)
    person = next(filter(None, map(_person, (phrase, prev_q, answer, *earlier))), "")
    asked_which = expected(prev_q) in ("agent", "person", "") and not _WHERE_HOW.match(prev_q)
    if phrase and asked_which and phrase != person and not (has_number(phrase) or has_time(phrase)):
        thing = phrase[0].lower() + phrase[1:] if phrase.split()[0] in ("The", "A", "An") else phrase
    else:
        thing = _topic(prev_q)
    own_person = bool(_person(question))  # "What did Peter say he added?": "he" is Peter
    nouns = {t.idx for t in parse(question) if t.pos_ in ("NOUN", "PROPN")}

    def target(m: re.Match) -> str:
        ref = m.group(0).lower()
        if m.group(1):  # that/this <noun>, but not "How long does that take?" nor "earlier this month"
            noun = m.group(1).lower()
            if m.start(1) not in nouns or noun in _TIMES:
                return ""
            return _place(prev_q, answer) if noun in _PLACES else thing
        return ("" if own_person else person) if ref in _PERSONAL else thing

    def swap(m: re.Match) -> str:
        to, ref = target(m), m.group(0).lower()
        if not to or to.lower() in question.lower():
            return m.group(0)
        after = question[m.end():].split(maxsplit=1)
        next_word = after[0].strip("?.,!").lower() if after else ""
        if ref in ("his", "its", "their") or (ref == "her" and next_word and next_word not in STOPWORDS):
            return to + ("’s" if "’" in question else "'s")  # "her warranty", not "ask her"
        return to

    return _REF.sub(swap, question)


def _previous(history: list[dict], depth: int) -> tuple[str, str, tuple[str, ...]]:
    """The previous question as it was read (condensed against the turns before it, up to `depth` of
    them deep), the previous answer, and the texts of the `2 * depth` turns before them, newest first."""
    at = next((i for i in range(len(history) - 1, -1, -1)
               if history[i].get("role") == "user" and history[i].get("content")), None)
    if at is None:
        return "", _last(history, "assistant"), ()
    prev_q = MARKER.sub("", str(history[at]["content"])).strip()
    if depth > 0 and any(t.get("role") == "user" for t in history[:at]):
        prev_q = condense(prev_q, history[:at], depth=depth - 1)[0]
    earlier = tuple(MARKER.sub("", str(t.get("content") or "")) for t in reversed(history[max(0, at - 2 * depth):at]))
    return prev_q, _last(history, "assistant"), earlier


def condense(question: str, history: list[dict] | None, depth: int = DEPTH) -> tuple[str, str]:
    """Return (standalone question, context terms to add to the retrieval query).

    >>> h = [{"role": "user", "content": "Where was Marta Kovacs born?"}, {"role": "assistant", "content": "Szeged."},
    ...      {"role": "user", "content": "Where did she study?"}, {"role": "assistant", "content": "Vienna."}]
    >>> condense("When?", h)[0], condense("When did she retire?", h)[0]
    ('When did Marta Kovacs study?', 'When did Marta Kovacs retire?')
    """
    if not history:
        return question, ""
    prev_q, prev_a, earlier = _previous(history, depth)
    lead = _LEAD.match(question)
    body = question[lead.end():].strip() if lead else question.strip()
    asks, before = _ASKS.fullmatch(body.rstrip("?").strip()), _ASKS.match(prev_q)
    if asks and before:  # "When?" after "Who founded the orchard?" -> "When founded the orchard?"
        return asks.group(1).capitalize() + prev_q[before.end():], ""
    if prev_q and (lead or not _WH.match(question)):
        first = body.split(maxsplit=1)[0].lower() if body else ""
        if first in _PREP:  # "And near Paris?" -> swap the phrase after the same preposition
            phrase = re.compile(rf"\b{first}\s+[^?,.;]*?(?=[?,.;]|$| and | or )", re.I)
            if phrase.search(prev_q):
                return phrase.sub(body.rstrip("?").strip(), prev_q, count=1), ""
        swapped = swap_head(body, prev_q) or swap_modifier(body, prev_q)
        if swapped:
            return swapped, ""
        if lead or len(body.split()) <= 4:
            return f"{prev_q.rstrip('?')} — {body}", ""
    if prev_q:
        resolved = resolve(question, prev_q, prev_a, earlier)
        if resolved != question:
            return resolved, ""
    if len(content_words(question)) < 3 and _PRONOUN.search(question):
        # Too little of its own to search with: borrow the names of the previous turn.
        context = names(MARKER.sub("", prev_a)) or names(prev_q)
        return question, " ".join(context[:4])
    return question, ""
