"""Source → target text pairs: from WordNet definitions or a user's JSONL file, and their split by source word.

A :class:`Pair` carries a ``group``, the thing no two splits may share: the word for WordNet (so a word's
senses, in every part of speech, stay in one split and a held-out word is truly unseen), the source text
itself for a user's pairs. Bad JSONL lines are skipped and counted by reason; when more than a set share of
the lines is bad, reading fails with an error naming the file and the first bad line numbers, since a file
that is mostly unusable is more likely a wrong field mapping than a few dirty lines.
"""
from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from repflow.families.text.wordnet import Definition
from repflow.sources import SkipReport, SourceError

__all__ = ["Pair", "PairsError", "wordnet_source", "wordnet_pairs", "read_jsonl_pairs",
           "split_by_group", "choose_by_group", "word_count", "DEFAULT_SPLITS"]

DEFAULT_SPLITS = {"train": 0.8, "valid": 0.1, "test": 0.1}


@dataclass(frozen=True)
class Pair:
    source: str
    target: str
    group: str


class PairsError(SourceError):
    """A pairs file whose share of bad lines is over the threshold, or that holds no usable pair."""


def word_count(text: str) -> int:
    """The default length of a source: whitespace-separated words."""
    return len(text.split())


def wordnet_source(word: str, pos: str) -> str:
    """The source text of a definition pair: the word and its part of speech, ``"bank (n)"``."""
    return f"{word} ({pos})"


def wordnet_pairs(definitions: Iterable[Definition], max_target_words: int | None = None) -> list[Pair]:
    """Definition pairs ``"word (pos)"`` → definition, grouped by the lower-cased word; definitions longer
    than ``max_target_words`` words are left out (short glosses train in minutes)."""
    return [Pair(wordnet_source(d.word, d.pos), d.definition, d.word.lower()) for d in definitions
            if max_target_words is None or word_count(d.definition) <= max_target_words]


def _check_fraction(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")


def read_jsonl_pairs(path: str | Path, *, source_field: str = "source", target_field: str = "target",
                     max_source_len: int = 64, length: Callable[[str], int] = word_count,
                     max_skipped_share: float = 0.1) -> tuple[list[Pair], SkipReport]:
    """The pairs of a JSONL file (one object per line, blank lines ignored) with the source and target under
    ``source_field`` / ``target_field``, and what was skipped. A line is skipped (and counted) when it is not
    a JSON object, lacks either field or has a non-string value there, has an empty (blank) source or target,
    or has a source longer than ``max_source_len`` by ``length`` (words by default; pass the tokenizer's
    token count for the model's limit). More than ``max_skipped_share`` of the lines skipped, or no pair kept,
    raises :class:`PairsError` naming the file and the first bad lines. Sources and targets are stripped."""
    _check_fraction("max_skipped_share", max_skipped_share)
    if isinstance(max_source_len, bool) or not isinstance(max_source_len, int) or max_source_len < 1:
        raise ValueError(f"max_source_len must be an int >= 1, got {max_source_len!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pairs file {path} does not exist")
    report, pairs = SkipReport(str(path)), []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            report.seen += 1
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                report.add_bad(number, "not JSON")
                continue
            if not isinstance(record, Mapping):
                report.add_bad(number, "not a JSON object")
                continue
            values = [record.get(k) for k in (source_field, target_field)]
            if not all(isinstance(v, str) for v in values):
                report.add_bad(number, f"no string {source_field!r} and {target_field!r}")
                continue
            source, target = (v.strip() for v in values)
            if not source or not target:
                report.add_bad(number, f"empty {'source' if not source else 'target'}")
            elif length(source) > max_source_len:
                report.add_bad(number, f"source longer than {max_source_len}")
            else:
                pairs.append(Pair(source, target, source))
    report.kept = len(pairs)
    if not pairs or report.skipped_share > max_skipped_share:
        raise PairsError(f"{report.describe()}; more than {max_skipped_share:.0%} bad (or none usable): check "
                         f"the field mapping (source={source_field!r}, target={target_field!r}) and the file")
    return pairs, report


def split_by_group(pairs: list[Pair], fractions: Mapping[str, float] = DEFAULT_SPLITS,
                   seed: int = 0) -> dict[str, list[Pair]]:
    """Pairs split so that no group (word) is in two splits: the distinct groups, sorted then shuffled with
    ``seed``, are cut by ``fractions`` (of the groups, not of the pairs; they must sum to 1); each split keeps
    the pairs' input order. Every split with a positive fraction gets at least one group when there are as
    many groups as such splits."""
    if not fractions:
        raise ValueError("fractions must name at least one split")
    for name, value in fractions.items():
        _check_fraction(f"fraction of split {name!r}", value)
    if abs(sum(fractions.values()) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {dict(fractions)} (sum {sum(fractions.values())})")
    groups = sorted({p.group for p in pairs})
    random.Random(seed).shuffle(groups)
    wanted = [name for name, value in fractions.items() if value > 0]
    if len(groups) < len(wanted):
        raise ValueError(f"{len(groups)} distinct source words cannot fill {len(wanted)} splits {wanted}")
    bounds, total = {}, 0.0
    for name in wanted:
        start = round(total * len(groups))
        total += fractions[name]
        bounds[name] = (start, round(total * len(groups)))
    for name in wanted:  # an empty split takes the last group of the largest one
        start, end = bounds[name]
        if end == start:
            donor = max(wanted, key=lambda n: bounds[n][1] - bounds[n][0])
            d_start, d_end = bounds[donor]
            bounds[donor], bounds[name] = (d_start, d_end - 1), (d_end - 1, d_end)
    split_of = {g: name for name, (a, b) in bounds.items() for g in groups[a:b]}
    out: dict[str, list[Pair]] = {name: [] for name in fractions}
    for p in pairs:
        out[split_of[p.group]].append(p)
    return out


def choose_by_group(pairs: list[Pair], max_pairs: int | None, seed: int = 0) -> list[Pair]:
    """All pairs of randomly chosen groups (words), group after group in an order from ``seed``, until at least
    ``max_pairs`` pairs (all of them for None): a smaller task that keeps every definition of a chosen word,
    so multi-reference scoring stays complete. Kept in the input order."""
    if max_pairs is None or len(pairs) <= max_pairs:
        return list(pairs)
    groups = sorted({p.group for p in pairs})
    random.Random(seed).shuffle(groups)
    sizes = Counter(p.group for p in pairs)
    chosen, total = set(), 0
    for g in groups:
        if total >= max_pairs:
            break
        chosen.add(g)
        total += sizes[g]
    return [p for p in pairs if p.group in chosen]
