"""Precision and recall per category of the local moderator (bots/core/safety) on a labelled set of
short English and French messages written by hand (bench/data/moderation.tsv), benign look-alikes
included ("this bug is killing me", "je meurs de rire"), then on smaller sets written after the lists
were tuned (moderation_holdout*.tsv). Also the time one check takes, on these sets, on ordinary chat
and on a long text (the cache of verdicts per text is emptied, so every check is a first one).

Prints a table, then the misses and false alarms so the lists can be judged, not just scored.
The lists were tuned with the first set in view, so its figures are optimistic; the misses of the
first three held-out sets then led to general passes over the lists (new phrasings, not their
sentences). The fourth was written and measured before the self-harm pass and never used to change
the lists, so it is the one held-out figure left (README "Care and safety" says why it is still an
upper bound).
Run: python bench/moderation.py [--data FILE] [--quiet]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bots.core.safety.moderator import LocalModerator
from bots.core.safety.settings import CATEGORIES

# Ordinary chat, 5-30 words, nothing to flag: what nearly every checked message looks like.
CHAT = [
    "hey everyone, what are you all up to this evening? I just got back from work",
    "lol that movie was great, did you see the ending",
    "can someone help me with my python script, it keeps crashing when I open the file",
    "I think we should order pizza tonight, who's in?",
    "Good morning! Coffee first, then the meeting at 10",
    "my cat knocked the plant off the shelf again 😂",
    "does anyone know a good book about the history of Rome? something not too academic",
    "ok I'll be there in 20 minutes, save me a seat",
    "honestly the new update broke half my plugins and I'm kind of annoyed",
    "we went hiking on Saturday, the view from the top was amazing and totally worth the climb",
    "what do you all think about remote work, is it better for you or do you miss the office",
    "Thanks for the tip yesterday, it worked perfectly!",
    "Salut tout le monde, quelqu'un a vu le match hier soir ?",
    "je cherche un bon resto pas trop cher près de la gare, des idées ?",
    "c'était trop bien le concert, on y retourne l'année prochaine",
    "j'ai enfin fini mon déménagement, je suis crevé mais content",
    "Bonne nuit à tous, à demain",
    "tu peux m'envoyer le lien du document quand tu as deux minutes ?",
    "should I learn Rust or Go next? I mostly write backend services in Python at work and want something faster",
    "It rained all day so we stayed in, played board games and made soup, honestly a perfect Sunday",
]
DATA = Path(__file__).resolve().parent / "data" / "moderation.tsv"
# Each held-out set was written after the lists were last changed; the misses of the first three then
# led to general passes over the lists (new phrasings, not their sentences), so only the fourth is
# still held out (README "Care and safety" gives each set's figures as first measured).
HOLDOUT = Path(__file__).resolve().parent / "data" / "moderation_holdout.tsv"
HOLDOUT2 = Path(__file__).resolve().parent / "data" / "moderation_holdout2.tsv"
HOLDOUT3 = Path(__file__).resolve().parent / "data" / "moderation_holdout3.tsv"
# Written before the self-harm pass over the lists (indirect phrasing, slang, typos, look-alikes) and
# committed with its figures on the lists of the time; that pass used the older sets, never this one.
HOLDOUT4 = Path(__file__).resolve().parent / "data" / "moderation_holdout4.tsv"


def load(path: Path) -> list[tuple[str, str, str]]:
    rows = []
    for n, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        label, lang, text = line.split("\t", 2)
        if label != "none" and label not in CATEGORIES:
            raise SystemExit(f"{path}:{n}: unknown label {label!r}")
        rows.append((label, lang, text))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, action="append", help="labelled file(s) (default: all sets in bench/data)")
    ap.add_argument("--quiet", action="store_true", help="only the tables")
    args = ap.parse_args(argv)
    moderator = LocalModerator()
    for path in args.data or [DATA, HOLDOUT, HOLDOUT2, HOLDOUT3, HOLDOUT4]:
        print(f"== {path.name}")
        report(load(path), moderator, quiet=args.quiet)
    print(f"== ordinary chat ({len(CHAT)} messages, {min(map(word_count, CHAT))}-{max(map(word_count, CHAT))} words)")
    print(f"one check: {per_check(CHAT, moderator) * 1e6:.1f} µs on average")
    long = " ".join(CHAT) * 10
    print(f"one check of a {word_count(long)}-word text: {per_check([long], moderator, rounds=50) * 1e6:.0f} µs")
    return 0


def word_count(text: str) -> int:
    return len(text.split())


def per_check(texts: list[str], moderator: LocalModerator, rounds: int = 200) -> float:
    """Seconds per check of a text not seen before: each round starts a moderator with an empty
    cache (verdicts are cached per text, and the same text checked twice would cost nothing)."""
    total = 0.0
    for _ in range(rounds):
        fresh = LocalModerator(moderator.lexicon)
        start = time.perf_counter()
        for text in texts:
            fresh.check_now(text)
        total += time.perf_counter() - start
    return total / (rounds * len(texts))


def report(rows: list[tuple[str, str, str]], moderator: LocalModerator, *, quiet: bool) -> None:
    found = [moderator.check_now(text).categories for _, _, text in rows]
    langs = sorted({lang for _, lang, _ in rows})
    print(f"{len(rows)} messages ({', '.join(f'{sum(r[1] == lg for r in rows)} {lg}' for lg in langs)})")
    print(f"{'category':<12} {'n':>4} {'tp':>4} {'fp':>4} {'fn':>4} {'precision':>10} {'recall':>8}")
    for category in (*CATEGORIES, "any"):
        tp = fp = fn = n = 0
        for (label, _, _), cats in zip(rows, found, strict=True):
            truth = label != "none" if category == "any" else label == category
            said = bool(cats) if category == "any" else category in cats
            n += truth
            tp += truth and said
            fp += said and not truth
            fn += truth and not said
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / (tp + fn) if tp + fn else 1.0
        print(f"{category:<12} {n:>4} {tp:>4} {fp:>4} {fn:>4} {precision:>10.2f} {recall:>8.2f}")
    benign = [(text, cats) for (label, _, text), cats in zip(rows, found, strict=True) if label == "none"]
    clear = sum(not cats for _, cats in benign)
    print(f"benign messages left alone: {clear}/{len(benign)}")
    per = per_check([text for _, _, text in rows], moderator, rounds=20)
    print(f"one check: {per * 1e6:.1f} µs on average")
    if not quiet:
        for (label, lang, text), cats in zip(rows, found, strict=True):
            if (label == "none") != (not cats) or (label != "none" and label not in cats):
                print(f"  {label:<10} {lang} said {','.join(cats) or 'none':<20} {text}")


if __name__ == "__main__":
    raise SystemExit(main())
