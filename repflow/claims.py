"""Claim records (``benchmarks/results/claims/<id>.json``, schema ``repflow.claim/1``): reading, checking, listing.

A record is what :func:`repflow.verdict.claim_record` writes after a benchmark judged a paper's claim. Reading
one checks every field's presence and type, that the file is named after its id, and that its verdict is what
the rule gives from its own per-seed differences and controls (so a hand-edited "holds" does not pass). A file
that fails is skipped and listed as ``<file>: key '<key>': <problem>``; ``repflow claims`` prints the rest.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from repflow.verdict import SCHEMA, VERDICTS, Claim, Control, judge

__all__ = ["ClaimRecordError", "ClaimSet", "load_claim", "load_claims", "default_claims_dir", "claims_markdown",
           "effect_text", "scale_text", "short_paper", "method_verdicts", "verdict_summary"]

CLAIMS_SUBDIR = Path("benchmarks") / "results" / "claims"
UNTESTED = "not yet tested under the rule"


class ClaimRecordError(ValueError):
    """A claim record that does not follow the schema or the rule: the file, the key and what is wrong."""


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _maybe_number(x: Any) -> bool:
    return x is None or (_number(x) and math.isfinite(x))


_FIELDS: dict[str, tuple[str, Any]] = {  # key → (what it must be, check)
    "schema": (f"the string {SCHEMA!r}", lambda v: v == SCHEMA),
    "id": ("lower-case letters, digits and _ . - (the file's name)",
           lambda v: isinstance(v, str) and bool(re.match(r"^[a-z0-9][a-z0-9_.-]*$", v))),
    "family": ("a non-empty string", lambda v: isinstance(v, str) and bool(v)),
    "paper": ("a non-empty string", lambda v: isinstance(v, str) and bool(v)),
    "claim": ("a non-empty string (one sentence)", lambda v: isinstance(v, str) and bool(v)),
    "metric": ("a non-empty string", lambda v: isinstance(v, str) and bool(v)),
    "direction": ("'higher' or 'lower'", lambda v: v in ("higher", "lower")),
    "smallest_effect": ("a number > 0", lambda v: _number(v) and math.isfinite(v) and v > 0),
    "unit": ("a string", lambda v: isinstance(v, str)),
    "methods": ("a list of method names", lambda v: isinstance(v, list) and all(isinstance(m, str) for m in v)),
    "seeds": ("a whole number >= 0", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0),
    "per_seed_diffs": ("a list of numbers or nulls", lambda v: isinstance(v, list) and all(map(_maybe_number, v))),
    "mean": ("a number or null", _maybe_number),
    "interval": ("[low, high], numbers or nulls", lambda v: isinstance(v, list) and len(v) == 2
                 and all(map(_maybe_number, v))),
    "confidence": ("a number between 0 and 1", lambda v: _number(v) and 0 < v < 1),
    "interval_method": ("a string", lambda v: isinstance(v, str)),
    "controls": ("a list of {name: str, passed: bool, detail: str}", lambda v: isinstance(v, list) and all(
        isinstance(c, dict) and isinstance(c.get("name"), str) and isinstance(c.get("passed"), bool)
        and isinstance(c.get("detail"), str) for c in v)),
    "verdict": (f"one of {', '.join(VERDICTS)}", lambda v: v in VERDICTS),
    "reason": ("a non-empty string", lambda v: isinstance(v, str) and bool(v)),
    "scale": ("an object (data, model, steps, device, ...)", lambda v: isinstance(v, dict)),
    "commit": ("a string", lambda v: isinstance(v, str)),
    "date": ("an ISO date string", lambda v: isinstance(v, str) and len(v) >= 10),
}


def load_claim(path: str | Path) -> dict:
    """One record, checked (see the module doc); :class:`ClaimRecordError` names the file and the key."""
    path = Path(path)

    def bad(key: str, problem: str) -> ClaimRecordError:
        return ClaimRecordError(f"{path}: key {key!r}: {problem}")

    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ClaimRecordError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ClaimRecordError(f"{path}: not JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(record, dict):
        raise ClaimRecordError(f"{path}: not a JSON object")
    for key, (what, ok) in _FIELDS.items():
        if key not in record:
            raise bad(key, "missing")
        if not ok(record[key]):
            raise bad(key, f"is {record[key]!r}; must be {what}")
    if record["id"] != path.stem:
        raise bad("id", f"is {record['id']!r} but the file is named {path.name}")
    if len(record["per_seed_diffs"]) != record["seeds"]:
        raise bad("per_seed_diffs", f"has {len(record['per_seed_diffs'])} values for {record['seeds']} seeds")
    ruled = _rule_verdict(record)
    if ruled != record["verdict"]:
        raise bad("verdict", f"is {record['verdict']!r}, but the rule gives {ruled!r} from the record's "
                             "per_seed_diffs and controls")
    return record


def _rule_verdict(record: dict) -> str:
    """The verdict :func:`repflow.verdict.judge` gives from the record's own differences and controls."""
    if record["seeds"] == 0 and record["reason"] == UNTESTED:
        return "inconclusive"
    claim = Claim(record["id"], record["family"], record["paper"], record["claim"], record["metric"],
                  record["direction"], record["smallest_effect"])
    diffs = [math.nan if d is None else d for d in record["per_seed_diffs"]]
    controls = [Control(c["name"], c["passed"], c["detail"]) for c in record["controls"]]
    return judge(claim, diffs, controls, confidence=record["confidence"]).verdict


@dataclass(frozen=True)
class ClaimSet:
    """The records read from a folder (sorted by family, then id) and the files skipped, one line each."""

    records: list[dict]
    problems: list[str]


def load_claims(folder: str | Path) -> ClaimSet:
    """Every ``*.json`` record in ``folder``; a malformed one is skipped and listed in ``problems``."""
    records, problems = [], []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            records.append(load_claim(path))
        except ClaimRecordError as exc:
            problems.append(str(exc))
    records.sort(key=lambda r: (r["family"], r["id"]))
    return ClaimSet(records, problems)


def default_claims_dir(cwd: str | Path | None = None) -> Path:
    """``benchmarks/results/claims`` under the current directory when it is there, else under the repository
    this package sits in."""
    here = Path(cwd or Path.cwd()) / CLAIMS_SUBDIR
    return here if here.is_dir() else Path(__file__).resolve().parents[1] / CLAIMS_SUBDIR


def short_paper(paper: str) -> str:
    """The authors and year of a paper as registries write it: ``"Xu et al. 2023, 'Efficient ...' (NeurIPS)"`` →
    ``"Xu et al. 2023"``, ``"Liu, Zhang, Wang 2023, '...'"`` → ``"Liu et al. 2023"``; a paper named without
    authors keeps its title."""
    head, _, rest = paper.partition(", '")
    if not any(ch.isalpha() for ch in head):
        return f"{head}, '{rest.split(chr(39))[0]}'" if rest else head
    if "," in head and " et al." not in head:
        return f"{head.split(',')[0].strip()} et al. {head.split()[-1]}"
    return head.strip()


def _g(x: float | None) -> str:
    return "?" if x is None else f"{x:+.3g}"


def effect_text(record: dict) -> str:
    """The gain in the claimed direction and its interval, with the unit: ``+0.031 [+0.012, +0.05] accuracy``
    (``-`` for a claim not tested yet)."""
    if record["seeds"] == 0:
        return "-"
    low, high = record["interval"]
    unit = f" {record['unit']}" if record["unit"] else ""
    span = "" if low is None and high is None else f" [{_g(low)}, {_g(high)}]"
    return f"{_g(record['mean'])}{span}{unit}"


def scale_text(record: dict) -> str:
    """The run's scale in one line: data, model, steps, device (whichever it names), then the seeds."""
    scale = record["scale"]
    parts = [str(scale[k]) for k in ("data", "model", "steps", "device") if scale.get(k)]
    if record["seeds"]:
        parts.append(f"{record['seeds']} seeds")
    return "; ".join(parts) or "-"


def claims_markdown(records: Iterable[dict]) -> str:
    """One markdown table row per record (what README.md holds between its claims markers)."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    records = list(records)
    rows = [f"| family | paper | claim | gain [{_pct(records)} interval] | verdict | reason | scale |",
            "|---|---|---|---|---|---|---|"]
    for r in records:
        rows.append(f"| {r['family']} | {cell(short_paper(r['paper']))} | {cell(r['claim'])} (`{r['id']}`) | "
                    f"{cell(effect_text(r))} | **{r['verdict']}** | {cell(r['reason'])} | {cell(scale_text(r))} |")
    return "\n".join(rows) + "\n"


def _pct(records: Iterable[dict]) -> str:
    levels = {r["confidence"] for r in records}
    return f"{levels.pop():.0%}" if len(levels) == 1 else "confidence"


def method_verdicts(records: Iterable[dict]) -> dict[tuple[str, str], list[str]]:
    """(family, method) → the verdicts of the claims naming that method, in record order."""
    out: dict[tuple[str, str], list[str]] = {}
    for r in records:
        for m in r["methods"]:
            out.setdefault((r["family"], m), []).append(r["verdict"])
    return out


def verdict_summary(verdicts: list[str]) -> str:
    """A short column: ``-`` for none, else each verdict with its count, ``holds 1, inconclusive 2``."""
    if not verdicts:
        return "-"
    return ", ".join(f"{v} {verdicts.count(v)}" for v in VERDICTS if v in verdicts)

