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
import re._constants as sre_c  # type: ignore[import-not-found]
import re._parser as sre_parse  # type: ignore[import-not-found]
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import ahocorasick

from bots.core.events import Author, Message
from bots.core.regex import Regex, encode
from bots.persona import Persona

# Which trigger wins when a persona has several that fire; also orders responders.
SCORES = {"mention": 100, "reply": 90, "dm": 80, "keywords": 50, "image": 45, "regex": 40, "chance": 10}

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
    """Literals one of which any match must contain, read with Python's parser (None: run it always).

    The parser only picks anchors; matching is RE2's. Where the two syntaxes disagree (an RE2-only
    construct, or something Python reads with a warning such as `[[:alpha:]]`) there is no anchor,
    so the regex simply runs on every message rather than being skipped wrongly.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            parsed = sre_parse.parse(pattern)
    except Exception:
        return None
    return _factor(parsed, True)


def _one_per_persona(reactions: list[ReactionHit]) -> list[ReactionHit]:
    """One reaction per persona per message: the first rule that fired wins."""
    seen: set[int] = set()
    out = []
    for r in reactions:
        if r.persona not in seen:
            seen.add(r.persona)
            out.append(r)
    return out


def _offer(best: dict[int, Hit], i: int, kind: str, detail: str) -> None:
    cur = best.get(i)
    if cur is None or SCORES[kind] > SCORES[cur.kind]:
        best[i] = Hit(i, kind, detail)


class TriggerIndex:
    """Compiled once per persona set; `match` is pure apart from the injected random generator."""

    def __init__(self, personas: Sequence[Persona], free_will_cap: int = 3):
        self.personas = list(personas)
        # Free-will hits rank last and at most max_responders answer, so more than that many are wasted
        # work that grows with the fleet; the cap keeps a 10,000-persona fleet nearly as cheap as 100.
        self.free_will_cap = free_will_cap
        self.by_id = {p.id: i for i, p in enumerate(self.personas)}
        self._entries: dict[str, list[tuple]] = {}
        self._regexes: list[tuple[int, Regex, float, str]] = []
        self._always: list[int] = []
        self._reaction_regexes: list[tuple[int, Regex, str, float]] = []
        self._always_reactions: list[int] = []
        self._chance_groups: dict[float, list[int]] = {}
        self._mention: list[bool] = []
        self._reply: list[bool] = []
        self._dm: list[int] = []
        self._dm_set: set[int] = set()
        # (persona, chance) of `image: true` triggers: a message with a photo.
        self._image: list[tuple[int, float]] = []
        # Keyword rules are numbered so a rule with a chance rolls once per message, however many
        # of its keywords the message contains.
        self._rule = 0
        for i, p in enumerate(self.personas):
            self._add_persona(i, p)
        auto = ahocorasick.Automaton()
        for word, payloads in self._entries.items():
            auto.add_word(word, (len(word), tuple(payloads)))
        self._empty = not self._entries
        if not self._empty:
            auto.make_automaton()
        self._auto = auto
        self._chance = [(p, idx, math.log1p(-p) if p < 1 else 0.0, f"{p:g}") for p, idx in self._chance_groups.items()]

    def _add(self, word: str, payload: tuple) -> None:
        word = word.lower()
        if word:
            self._entries.setdefault(word, []).append(payload)

    def _add_regex(self, pattern: str, tag: str, always: list[int], rid: int) -> None:
        anchors = regex_anchors(pattern)
        if anchors is None:
            always.append(rid)
        else:
            for a in anchors:
                self._add(a, (tag, rid))

    def _add_persona(self, i: int, p: Persona) -> None:
        has_mention = p.has("mention")
        self._mention.append(has_mention)
        self._reply.append(p.has("reply"))
        if p.has("dm"):
            self._dm.append(i)
            self._dm_set.add(i)
        if has_mention:
            for name in {p.id, p.name, p.name.removeprefix("The ").removeprefix("the ")}:
                self._add(name, ("name", i, 1.0, name))
        self._add_triggers(i, p)
        self._add_reactions(i, p)

    def _add_triggers(self, i: int, p: Persona) -> None:
        for t in p.triggers:
            if t.keywords:
                self._rule += 1
                for kw in t.keywords:
                    self._add(kw, ("kw", i, t.probability, kw, self._rule))
            elif t.regex is not None:
                self._add_regex(t.regex, "re", self._always, len(self._regexes))
                self._regexes.append((i, Regex(t.regex), t.probability, t.regex))
            elif t.image:
                self._image.append((i, t.probability))
            elif t.kind == "chance" and t.probability > 0:
                self._chance_groups.setdefault(t.probability, []).append(i)

    def _add_reactions(self, i: int, p: Persona) -> None:
        for r in p.reactions:
            if r.keywords:
                self._rule += 1
                for kw in r.keywords:
                    self._add(kw, ("react", i, r.chance, kw, r.emoji, self._rule))
            if r.regex:
                self._add_regex(r.regex, "rre", self._always_reactions, len(self._reaction_regexes))
                self._reaction_regexes.append((i, Regex(r.regex), r.emoji, r.chance))

    def __len__(self) -> int:
        return len(self.personas)

    def match(
        self, msg: Message, rng: random.Random, *, free_will: bool = True
    ) -> tuple[dict[int, Hit], list[ReactionHit]]:
        """Every persona whose trigger fires for msg (its best hit), and the reactions that fire."""
        best: dict[int, Hit] = {}
        reactions: list[ReactionHit] = []
        self._addressed(msg, best)
        if msg.images and self._image:
            self._photo(rng, best)
        text = msg.text
        regex_ids: set[int] = set()
        reaction_ids: set[int] = set()
        if not self._empty and text:
            self._scan(text.lower(), rng, best, reactions, regex_ids, reaction_ids)
        if regex_ids or reaction_ids or self._always or self._always_reactions:
            self._run_regexes(text, rng, best, reactions, regex_ids, reaction_ids)
        self._free_will(rng, best, self.free_will_cap if free_will else 0)
        return best, _one_per_persona(reactions) if len(reactions) > 1 else reactions

    def _addressed(self, msg: Message, best: dict[int, Hit]) -> None:
        """Hits that need no text: platform mentions, replies to a persona, direct messages."""
        # Sorted: a frozenset of strings iterates in a per-process hash order, and the order of hits
        # decides which random draw each candidate gets (simulate --seed must repeat across processes).
        for pid in sorted(msg.mentions):
            i = self.by_id.get(pid)
            if i is not None and self._mention[i]:
                _offer(best, i, "mention", "platform")
        if msg.reply_to_persona is not None:
            i = self.by_id.get(msg.reply_to_persona)
            if i is not None and self._reply[i]:
                _offer(best, i, "reply", "")
        if msg.is_dm:
            self._direct(msg.to_persona, best)

    def _photo(self, rng: random.Random, best: dict[int, Hit]) -> None:
        for i, chance in self._image:
            if chance >= 1 or rng.random() < chance:
                _offer(best, i, "image", "")

    def _direct(self, to_persona: str | None, best: dict[int, Hit]) -> None:
        """A DM to one persona's own account reaches that persona; a DM to the host reaches every dm trigger."""
        if to_persona is None:
            for i in self._dm:
                _offer(best, i, "dm", "")
            return
        target = self.by_id.get(to_persona)
        if target is not None and target in self._dm_set:
            _offer(best, target, "dm", "")

    def _scan(
        self,
        lowered: str,
        rng: random.Random,
        best: dict[int, Hit],
        reactions: list[ReactionHit],
        regex_ids: set[int],
        reaction_ids: set[int],
    ) -> None:
        """One Aho-Corasick pass: keywords and names fire, regexes whose anchor occurs are noted."""
        rolled: set[int] = set()
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
                elif tag == "rre":
                    reaction_ids.add(payload[1])
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
                    _offer(best, i, "keywords", kw)
                elif tag == "name":
                    _offer(best, payload[1], "mention", "name")
                else:
                    _, i, chance, kw, emoji, rule = payload
                    if rule in rolled:
                        continue
                    rolled.add(rule)
                    if chance >= 1 or rng.random() < chance:
                        reactions.append(ReactionHit(i, emoji, kw))

    def _run_regexes(
        self,
        text: str,
        rng: random.Random,
        best: dict[int, Hit],
        reactions: list[ReactionHit],
        regex_ids: set[int],
        reaction_ids: set[int],
    ) -> None:
        """The candidate regexes, on RE2 over the message encoded once."""
        encoded = encode(text)
        regex_ids.update(self._always)
        for rid in sorted(regex_ids):
            i, rx, chance, src = self._regexes[rid]
            cur = best.get(i)
            if cur is not None and cur.score >= SCORES["regex"]:
                continue
            if rx.search(encoded) and (chance >= 1 or rng.random() < chance):
                _offer(best, i, "regex", src)
        self._run_reaction_regexes(encoded, rng, reactions, reaction_ids)

    def _run_reaction_regexes(
        self, encoded: bytes, rng: random.Random, reactions: list[ReactionHit], reaction_ids: set[int]
    ) -> None:
        reaction_ids.update(self._always_reactions)
        for rid in sorted(reaction_ids):
            i, rx, emoji, chance = self._reaction_regexes[rid]
            if rx.search(encoded) and (chance >= 1 or rng.random() < chance):
                reactions.append(ReactionHit(i, emoji, rx.pattern, "regex"))

    def _free_will(self, rng: random.Random, best: dict[int, Hit], cap: int) -> None:
        fired = 0
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
