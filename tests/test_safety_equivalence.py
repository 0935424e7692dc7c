"""The fast local moderator answers exactly what the slow one it replaced answered.

The reference is the old implementation frozen in tests/safety_reference.py (full alternation per
section, searched for every text). Both read the same shipped lists, so the comparison stays valid
when the lists change. Texts: every labelled message in bench/data, every string in the safety
tests, and a few thousand generated ones: each list phrase written out (options chosen, stems
given endings, gaps filled) and then disguised the ways people get around word lists (leetspeak,
repeated letters, spaced or dotted letters, accents, capitals, elisions, typos, words run
together), plus benign sentences built from the lists' own words, which the prefilter sees most.
"""

from __future__ import annotations

import ast
import random
from collections.abc import Iterator
from functools import cache
from importlib import resources
from pathlib import Path

import pytest

import tests.safety_reference as ref
from bots.core.safety.lexicon import LANGS, Lexicon, language
from bots.core.safety.moderator import CACHED, CACHED_CHARS, LocalModerator
from bots.core.safety.normalize import fold
from bots.core.safety.settings import CATEGORIES

ROOT = Path(__file__).resolve().parent.parent
LOCAL_ONLY = ("pressure", "human_claim", "medical", "legal", "financial", "professional")
FILLER = (
    "i you the a is to my it so and really just but then we they that this what ok lol my friend said "
    "je tu le la les de des est pas que mais alors bon ouais mon ami a dit today tonight demain"
).split()


def shipped_lists() -> list[dict[str, list[str]]]:
    files = resources.files("bots.core.safety") / "data"
    return [ref.parse((files / f"{lang}.txt").read_text("utf-8"), f"{lang}.txt") for lang in LANGS]


@cache
def reference() -> ref.Lexicon:
    return ref.Lexicon.build(shipped_lists())


def bench_texts() -> list[str]:
    out = []
    for path in sorted((ROOT / "bench" / "data").glob("*.tsv")):
        for line in path.read_text("utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                out.append(line.split("\t", 2)[2])
    return out


def strings_of_safety_tests() -> list[str]:
    out = []
    for name in ("test_safety.py", "test_safety_e2e.py", "test_care_e2e.py", "test_admission.py"):
        tree = ast.parse((ROOT / "tests" / name).read_text("utf-8"))
        out += [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    return out


def _options(group: str) -> list[str]:
    inner = group[1 : group.rindex(")")]
    options, depth, start = [], 0, 0
    for i, c in enumerate(inner):
        depth += {"(": 1, ")": -1}.get(c, 0)
        if c == "|" and depth == 0:
            options.append(inner[start:i])
            start = i + 1
    return [*options, inner[start:]]


def written_out(phrase: str, rng: random.Random) -> str:
    """One plain sentence the phrase is meant to match (or, for a stem, a word it starts)."""
    words: list[str] = []
    for raw in ref._parts(phrase):
        if raw == "_":
            words += rng.sample(FILLER, rng.choice((0, 1)))
        elif raw == "~":
            words += rng.sample(FILLER, rng.randint(0, 5))
        elif raw.startswith("("):
            if raw.endswith("?") and rng.random() < 0.4:
                continue
            words.append(written_out(rng.choice(_options(raw)), rng))
        else:
            words.append(raw.rstrip("*") + (rng.choice(("", "s", "ing", "ed", "al", "y")) if raw.endswith("*") else ""))
    return " ".join(w for w in words if w)


LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "$", "t": "7", "b": "8"}
ACCENTS = {"e": "é", "a": "à", "i": "ï", "o": "ô", "u": "ü", "c": "ç"}


def disguised(text: str, rng: random.Random) -> str:
    """text with a few of the usual disguises, chosen at random."""
    for _ in range(rng.randint(0, 3)):
        how = rng.randrange(11)
        chars = list(text)
        if not chars:
            break
        i = rng.randrange(len(chars))
        if how == 0:
            text = "".join(LEET.get(c, c) if rng.random() < 0.3 else c for c in text)
        elif how == 1:
            text = "".join(c * rng.randint(2, 4) if c.isalpha() and rng.random() < 0.1 else c for c in text)
        elif how == 2:
            words = text.split()
            k = rng.randrange(len(words)) if words else 0
            text = " ".join(" ".join(w) if j == k else w for j, w in enumerate(words))
        elif how == 3:
            text = "".join(c + rng.choice(".-*_") if c.isalpha() and rng.random() < 0.2 else c for c in text)
        elif how == 4:
            text = "".join(ACCENTS.get(c, c) if rng.random() < 0.3 else c for c in text)
        elif how == 5:
            text = "".join(c.upper() if rng.random() < 0.4 else c for c in text)
        elif how == 6:
            text = text.replace("je ", rng.choice(("j'", "j’", "j", "chui ", "je "))).replace("me ", "m'")
        elif how == 7:
            del chars[i]
            text = "".join(chars)
        elif how == 8 and i + 1 < len(chars):
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
            text = "".join(chars)
        elif how == 9:
            text = text.replace(" ", rng.choice(("", "  ", " ... ", ", ")), rng.randint(1, 3))
        else:
            before = rng.choice(("", "lol ", "Hey, ", "tbh ", "😭 ", "Bon, "))
            text = before + text + rng.choice(("", "!!", " ?", " 😂", " now"))
    return text


def generated(count_per_phrase: int = 3, salads: int = 2500) -> Iterator[str]:
    rng = random.Random(17)
    vocabulary: list[str] = []
    for lists in shipped_lists():
        for phrases in lists.values():
            for phrase in phrases:
                vocabulary += [w.strip("()?*|") for w in phrase.replace("|", " ").split() if w not in "_~"]
                for _ in range(count_per_phrase):
                    plain = written_out(phrase, rng)
                    yield plain
                    yield disguised(plain, rng)
    vocabulary = [w for w in vocabulary if w]
    for _ in range(salads):
        words = rng.sample(vocabulary, rng.randint(1, 4)) + rng.sample(FILLER, rng.randint(2, 12))
        rng.shuffle(words)
        yield disguised(" ".join(words), rng)


def corpus() -> list[str]:
    odd = ["", "   ", "😀", "x" * 3000, "kill " * 500, "Tiếng Việt là sui\u0301cide", "नमस्ते ki\u0951ll myself"]
    odd += ["שָׁלוֹם", "e\u034fnd my life", "ﬁnal ſuicide Straße", "ＫＩＬＬ ＭＹＳＥＬＦ"]
    odd += ["k\u0327i\u0300l\u20dbl myself"]
    return [*bench_texts(), *strings_of_safety_tests(), *generated(), *odd]


def test_the_corpus_is_large_and_holds_both_flagged_and_clear_texts() -> None:
    texts = corpus()
    flagged = sum(bool(ref.check(reference(), t, CATEGORIES)[0]) for t in texts)
    assert len(texts) > 6000
    assert 1000 < flagged < len(texts) - 1000


@pytest.mark.parametrize("fresh", [False, True], ids=["cached", "fresh"])
def test_fast_and_reference_moderators_give_identical_answers(fresh: bool) -> None:
    # Every text twice: the second answer may come from the moderator's cache, and must not differ.
    local = LocalModerator(fast_lexicon())
    old = reference()
    differ = []
    for text in corpus() * (1 if fresh else 2):
        if fresh:
            local = LocalModerator(local.lexicon)
        verdict = local.check_now(text)
        want_cats, want_lang = ref.check(old, text, CATEGORIES)
        got = (verdict.categories, verdict.lang, local.sections(text, LOCAL_ONLY))
        want = (want_cats, want_lang, ref.check(old, text, LOCAL_ONLY)[0])
        if got != want:
            differ.append((text, got, want))
    assert differ == []


def test_fold_blanking_and_language_are_unchanged() -> None:
    fast, old = fast_lexicon(), reference()
    differ = [
        t
        for t in corpus()
        if fold(t) != ref.fold(t) or fast.folded(t) != old.folded(t) or language(t) != ref.language(t)
    ]
    assert differ == []


def test_hits_on_folded_text_are_unchanged() -> None:
    # The form rules.professional uses: folded (blanked) first, then any sections asked for.
    fast, old = fast_lexicon(), reference()
    names = (*CATEGORIES, *LOCAL_ONLY)
    differ = [t for t in corpus()[::3] if fast.hits(fast.folded(t), names) != old.hits(old.folded(t), names)]
    assert differ == []


def test_fold_is_unchanged_on_every_one_letter_slip_of_the_keywords() -> None:
    # The keyword repair is a lookup table now; every word one edit from a keyword must still fold alike.
    letters = "abcdefghijklmnopqrstuvwxyz"
    slips = set()
    for word in ("suicide", "suicidal", "suicider", "suicidaire", "myself"):
        for i in range(len(word) + 1):
            slips |= {word[:i] + c + word[i:] for c in letters}
            slips |= {word[:i] + c + word[i + 1 :] for c in letters}
            slips.add(word[:i] + word[i + 1 :])
            slips.add(word[:i] + word[i + 1 : i + 2] + word[i : i + 1] + word[i + 2 :])
    texts = [f"i {s} now" for s in slips] + [f"{s}s" for s in slips] + [f"my {s[:-1]}" for s in slips]
    assert [fold(t) for t in texts] == [ref.fold(t) for t in texts]


def test_the_verdict_cache_keeps_only_recent_texts() -> None:
    local = LocalModerator(fast_lexicon())
    for n in range(CACHED + 50):
        local.check_now(f"message number {n}")
    assert len(local._verdicts) == CACHED
    assert "message number 0" not in local._verdicts and f"message number {CACHED + 49}" in local._verdicts
    assert local.check_now("I want to kill myself").categories == ("self_harm",)
    long = "I want to kill myself " + "la " * CACHED_CHARS
    assert local.check_now(long).categories == ("self_harm",) and long not in local._verdicts


@cache
def fast_lexicon() -> Lexicon:
    return Lexicon.build(shipped_lists())
