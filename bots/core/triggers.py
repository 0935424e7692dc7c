"""The compiled trigger index: one pass over a message finds every persona whose trigger fires.

All keywords, persona names and the literal "anchors" of every regex go into one Aho-Corasick
automaton, so the cost of matching a message grows with what the message contains, not with
the number of personas. A regex runs only when its anchor appears in the text (the way RE2's
FilteredRE2 and Hyperscan prefilter), and free-will dice are drawn per chance value by skipping
ahead geometrically instead of rolling once per persona.
"""

from __future__ import annotations

import math
import random
import re
import re._constants as sre_c  # type: ignore[import-not-found]
import re._parser as sre_parse  # type: ignore[import-not-found]
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import ahocorasick

from bots.core.events import Author, Message
from bots.persona import Persona

# Which trigger wins when a persona has several that fire; also orders responders.
SCORES = {"mention": 100, "reply": 90, "dm": 80, "keywords": 50, "regex": 40, "chance": 10}

_MIN_ANCHOR = 2


class Hit(NamedTuple):
    # A NamedTuple rather than a frozen dataclass: it is built on the per-message path, and tuple
    # construction is several times cheaper than a frozen dataclass __init__.
    persona: int
    kind: str
    detail: str

    @property
    def score(self) -> int:
        return SCORES[self.kind]

    @property
    def reason(self) -> str:
        return f"{self.kind}:{self.detail}" if self.detail else self.kind


@dataclass(frozen=True, slots=True)
class ReactionHit:
    persona: int
    emoji: str
    detail: str
    kind: str = "keywords"


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _factor(items: sre_parse.SubPattern | list, ignore_case: bool) -> frozenset[str] | None:
    """A set of strings one of which must occur in any match of the pattern (None: no such set)."""
    best: frozenset[str] | None = None
    run: list[str] = []

    def consider(candidate: frozenset[str] | None) -> None:
        nonlocal best
        if not candidate:
            return
        if best is None or min(map(len, candidate)) > min(map(len, best)):
            best = candidate

    def flush() -> None:
        if len(run) >= _MIN_ANCHOR:
            consider(frozenset(["".join(run).lower()]))
        run.clear()

    for op, arg in items:
        if op is sre_c.LITERAL:
            run.append(chr(arg))
            continue
        flush()
        if op is sre_c.SUBPATTERN:
            consider(_factor(arg[3], ignore_case))
        elif op is sre_c.BRANCH:
            alts = [_factor(alt, ignore_case) for alt in arg[1]]
            if alts and all(a for a in alts):
                consider(frozenset().union(*alts))  # type: ignore[arg-type]
        elif op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, getattr(sre_c, "POSSESSIVE_REPEAT", None)):
            lo, _hi, sub = arg
            if lo >= 1:
                consider(_factor(sub, ignore_case))
        elif op is sre_c.AT:
            continue
    flush()
    if best is not None and min(map(len, best)) < _MIN_ANCHOR:
        return None
    return best


def regex_anchors(pattern: str) -> frozenset[str] | None:
    try:
        parsed = sre_parse.parse(pattern)
    except Exception:
        return None
    return _factor(parsed, True)


class TriggerIndex:
    """Compiled once per persona set; `match` is pure apart from the injected random generator."""

    def __init__(self, personas: Sequence[Persona], free_will_cap: int = 3):
        self.personas = list(personas)
        # Free-will hits rank last and at most max_responders answer, so more than that many are wasted
        # work that grows with the fleet; the cap keeps a 10,000-persona fleet nearly as cheap as 100.
        self.free_will_cap = free_will_cap
        self.by_id = {p.id: i for i, p in enumerate(self.personas)}
        auto = ahocorasick.Automaton()
        entries: dict[str, list[tuple]] = {}

        def add(word: str, payload: tuple) -> None:
            word = word.lower()
            if word:
                entries.setdefault(word, []).append(payload)

        self._regexes: list[tuple[int, re.Pattern[str], float, str]] = []
        self._always: list[int] = []
        self._reaction_regexes: list[tuple[int, re.Pattern[str], str, float]] = []
        chance_groups: dict[float, list[int]] = {}
        self._mention: list[bool] = []
        self._reply: list[bool] = []
        self._dm: list[int] = []
        self._dm_set: set[int] = set()

        # Keyword rules are numbered so a rule with a chance rolls once per message, however many
        # of its keywords the message contains.
        rule = 0
        for i, p in enumerate(self.personas):
            has_mention = p.has("mention")
            self._mention.append(has_mention)
            self._reply.append(p.has("reply"))
            if p.has("dm"):
                self._dm.append(i)
                self._dm_set.add(i)
            if has_mention:
                for name in {p.id, p.name, p.name.removeprefix("The ").removeprefix("the ")}:
                    add(name, ("name", i, 1.0, name))
            for t in p.triggers:
                if t.keywords:
                    rule += 1
                    for kw in t.keywords:
                        add(kw, ("kw", i, t.probability, kw, rule))
                elif t.regex is not None:
                    rid = len(self._regexes)
                    self._regexes.append((i, re.compile(t.regex), t.probability, t.regex))
                    anchors = regex_anchors(t.regex)
                    if anchors is None:
                        self._always.append(rid)
                    else:
                        for a in anchors:
                            add(a, ("re", rid))
                elif t.kind == "chance" and t.probability > 0:
                    chance_groups.setdefault(t.probability, []).append(i)
            for r in p.reactions:
                if r.keywords:
                    rule += 1
                    for kw in r.keywords:
                        add(kw, ("react", i, r.chance, kw, r.emoji, rule))
                if r.regex:
                    self._reaction_regexes.append((i, re.compile(r.regex), r.emoji, r.chance))
        for word, payloads in entries.items():
            auto.add_word(word, (len(word), tuple(payloads)))
        self._empty = not entries
        if not self._empty:
            auto.make_automaton()
        self._auto = auto
        self._chance = [(p, idx, math.log1p(-p) if p < 1 else 0.0, f"{p:g}") for p, idx in chance_groups.items()]

    def __len__(self) -> int:
        return len(self.personas)

    def match(
        self, msg: Message, rng: random.Random, *, free_will: bool = True
    ) -> tuple[dict[int, Hit], list[ReactionHit]]:
        """Every persona whose trigger fires for msg (its best hit), and the reactions that fire."""
        best: dict[int, Hit] = {}
        reactions: list[ReactionHit] = []

        def offer(i: int, kind: str, detail: str) -> None:
            cur = best.get(i)
            if cur is None or SCORES[kind] > SCORES[cur.kind]:
                best[i] = Hit(i, kind, detail)

        # Sorted: a frozenset of strings iterates in a per-process hash order, and the order of hits
        # decides which random draw each candidate gets (simulate --seed must repeat across processes).
        for pid in sorted(msg.mentions):
            i = self.by_id.get(pid)
            if i is not None and self._mention[i]:
                offer(i, "mention", "platform")
        if msg.reply_to_persona is not None:
            i = self.by_id.get(msg.reply_to_persona)
            if i is not None and self._reply[i]:
                offer(i, "reply", "")
        if msg.is_dm:
            if msg.to_persona is not None:
                i = self.by_id.get(msg.to_persona)
                if i is not None and i in self._dm_set:
                    offer(i, "dm", "")
            else:
                for i in self._dm:
                    offer(i, "dm", "")

        text = msg.text
        lowered = text.lower()
        regex_ids: set[int] = set()
        rolled: set[int] = set()
        if not self._empty and lowered:
            n = len(lowered)
            for end, (length, payloads) in self._auto.iter(lowered):
                start = end - length + 1
                bounded = (start == 0 or not _is_word(lowered[start - 1])) and (
                    end + 1 >= n or not _is_word(lowered[end + 1])
                )
                for payload in payloads:
                    tag = payload[0]
                    if tag == "re":
                        regex_ids.add(payload[1])
                    elif not bounded:
                        continue
                    elif tag == "kw":
                        _, i, chance, kw, rule = payload
                        if i in best or rule in rolled:
                            continue
                        if chance < 1:
                            rolled.add(rule)
                            if rng.random() >= chance:
                                continue
                        offer(i, "keywords", kw)
                    elif tag == "name":
                        offer(payload[1], "mention", "name")
                    else:
                        _, i, chance, kw, emoji, rule = payload
                        if rule in rolled:
                            continue
                        rolled.add(rule)
                        if chance >= 1 or rng.random() < chance:
                            reactions.append(ReactionHit(i, emoji, kw))
        if self._always:
            regex_ids.update(self._always)
        for rid in sorted(regex_ids):
            i, rx, chance, src = self._regexes[rid]
            cur = best.get(i)
            if cur is not None and cur.score >= SCORES["regex"]:
                continue
            if rx.search(text) and (chance >= 1 or rng.random() < chance):
                offer(i, "regex", src)
        for i, rx, emoji, chance in self._reaction_regexes:
            if rx.search(text) and (chance >= 1 or rng.random() < chance):
                reactions.append(ReactionHit(i, emoji, rx.pattern, "regex"))
        fired = 0
        cap = self.free_will_cap if free_will else 0
        rand = rng.random
        log = math.log
        for p, members, log_q, label in self._chance:
            count = len(members)
            # Start at a random place so the cap never favours the personas listed first.
            offset = rng.randrange(count)
            k = -1
            while fired < cap:
                # Geometric skipping: one draw per success instead of one per persona (p = 1: no skip).
                k += 1 if p >= 1 else 1 + int(log(1.0 - rand()) / log_q)
                if k >= count:
                    break
                i = members[(offset + k) % count]
                if i not in best:  # chance ranks last: any other hit of this persona wins
                    best[i] = Hit(i, "chance", label)
                    fired += 1
        if len(reactions) > 1:
            # One reaction per persona per message: the first rule that fired wins.
            seen: set[int] = set()
            reactions = [r for r in reactions if not (r.persona in seen or seen.add(r.persona))]
        return best, reactions

    def rank(self, text: str, candidates: Sequence[int], rng: random.Random) -> list[int]:
        """Order candidates by how well text matches their triggers (for /ask and /panel), ties at random."""
        probe = Message(platform="", id="", channel="", author=_NOBODY, text=text)
        # Free will says nothing about relevance: left in, it would rank the same few personas first.
        hits, _ = self.match(probe, _Certain(), free_will=False)
        keyed = [(-(hits[i].score if i in hits else 0), rng.random(), i) for i in candidates]
        return [i for *_, i in sorted(keyed)]


class _Certain(random.Random):
    """Ranking ignores chance: a keyword that would fire sometimes still counts as relevant."""

    def random(self) -> float:
        return 0.0


_NOBODY = Author(id="", name="")
