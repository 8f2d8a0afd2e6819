"""The one verdict rule for a paper's claim: a paired effect over seeds, its interval, controls, a verdict.

A benchmark declares a :class:`Claim` before it runs (metric, direction, the smallest effect that would count
as a gain), measures one paired difference per seed (method − reference on the same data, the same start and
the same batches), and hands those differences to :func:`judge`:

- fewer than :data:`MIN_SEEDS` seeds, or a non-finite difference → **inconclusive**, with the reason;
- any control failed (a positive control, or the floor/ceiling check of :func:`separation_check`) →
  **inconclusive**, naming it;
- the interval's lower end above 0 (a gain in the claimed direction) → **holds**;
- the interval's upper end below the smallest effect (no gain that would count) → **does not hold**;
- otherwise → **inconclusive: interval too wide**.

:func:`claim_record` turns a judged claim into one JSON record (schema :data:`SCHEMA`, documented in
``docs/claims.md``) and :func:`write_claim` writes it to ``<results>/claims/<claim id>.json``.

numpy and scipy only: importable, and testable, where torch and the runtime are absent.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
from scipy import stats

__all__ = ["Claim", "Control", "Verdict", "SCHEMA", "MIN_SEEDS", "CONFIDENCE", "INTERVAL_METHOD", "VERDICTS",
           "paired_interval", "separation_check", "positive_control", "judge", "oriented", "claim_record",
           "write_claim", "claim_path"]

SCHEMA = "repflow.claim/1"
MIN_SEEDS = 5
CONFIDENCE = 0.95
INTERVAL_METHOD = "student-t on paired per-seed differences"
VERDICTS = ("holds", "does not hold", "inconclusive")
_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


@dataclass(frozen=True)
class Claim:
    """A paper's claim as a benchmark tests it, declared before the run.

    ``metric`` is what is compared per seed (method − reference); ``direction`` says which way is a gain;
    ``smallest_effect`` (> 0, in the metric's ``unit``) is the smallest gain in that direction that would
    count. ``methods`` names the methods (as ``repflow families`` lists them in ``family``) the claim is about.
    ``id`` names the record file: lower case, digits, ``_ . -``, e.g. ``image.rcs_vs_random``."""

    id: str
    family: str
    paper: str
    statement: str
    metric: str
    direction: Literal["higher", "lower"]
    smallest_effect: float
    unit: str = ""
    methods: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _ID.match(self.id):
            raise ValueError(f"claim id {self.id!r}: lower-case letters, digits and _ . - only")
        if self.direction not in ("higher", "lower"):
            raise ValueError(f"claim {self.id}: direction {self.direction!r}; allowed: higher, lower")
        if not (math.isfinite(self.smallest_effect) and self.smallest_effect > 0):
            raise ValueError(f"claim {self.id}: smallest_effect {self.smallest_effect!r} must be a finite number > 0")
        if isinstance(self.methods, str):
            raise ValueError(f"claim {self.id}: methods must be a tuple of names, not one string")


@dataclass(frozen=True)
class Control:
    """A check that must pass before a verdict counts: its name, outcome and the numbers behind it."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Verdict:
    """The rule's outcome. ``mean``, ``low``, ``high``: the gain in the claimed direction and its interval
    (``nan`` where it cannot be computed); ``n``: the number of seeds."""

    verdict: Literal["holds", "does not hold", "inconclusive"]
    reason: str
    n: int
    mean: float
    low: float
    high: float


def paired_interval(diffs: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean of paired per-seed differences and its two-sided Student-t interval:
    ``mean ± t_{(1+confidence)/2, n−1} · sd / √n`` (``sd`` with ``n − 1``).

    Why t and not a bootstrap: with 5–10 seeds the percentile bootstrap's interval is too narrow (it resamples
    only the n values seen, so it under-covers: a nominal 95 % interval covers the true mean noticeably less
    often), while the t interval is exact for normal differences and close for mildly skewed ones at these n.
    ``nan`` bounds for fewer than 2 values (no spread to estimate); a zero spread gives ``low == high == mean``."""
    x = np.asarray(diffs, dtype=float)
    n = x.size
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if n < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half


def _fmt(x: float) -> str:
    return f"{x:+.4g}"


def separation_check(weak: Sequence[float], strong: Sequence[float], smallest_effect: float, *,
                     name: str = "floor/ceiling", chance: float | None = None, best: float | None = None,
                     confidence: float = CONFIDENCE) -> Control:
    """Can the task separate the arms at all? ``weak`` and ``strong`` are a weak and a strong reference's
    scores per seed (same seeds, in the claim's orientation: higher is better; e.g. an untrained encoder vs
    a supervised one). Passes when strong − weak, paired by seed, has its interval's lower end above
    ``smallest_effect``. A failure reads ``ceiling: ...`` when ``best`` (the metric's best possible value) is
    given and the weak reference is already within the smallest effect of it, else ``floor: ...`` (the
    strong reference does not rise above the weak one; ``chance``, when given, is named in the detail)."""
    w, s = np.asarray(weak, dtype=float), np.asarray(strong, dtype=float)
    if w.shape != s.shape:
        raise ValueError(f"{name}: weak and strong must be paired by seed; got {w.size} and {s.size} values")
    mean, low, high = paired_interval(s - w, confidence)
    numbers = (f"weak reference (floor) {np.mean(w):.4g}, strong reference (ceiling) {np.mean(s):.4g}; "
               f"strong − weak {_fmt(mean)} [{_fmt(low)}, {_fmt(high)}] over {w.size} seeds vs the smallest "
               f"effect {smallest_effect:.4g}")
    if chance is not None:
        numbers += f"; chance {chance:.4g}"
    if best is not None:
        numbers += f"; best possible {best:.4g}"
    if math.isfinite(low) and low > smallest_effect:
        return Control(name, True, f"separates: {numbers}")
    if best is not None and np.mean(w) >= best - smallest_effect:
        return Control(name, False, f"ceiling: the weak reference is already at the top; {numbers}")
    return Control(name, False, f"floor: the task does not separate the references; {numbers}")


def positive_control(diffs: Sequence[float], *, name: str = "positive control",
                     confidence: float = CONFIDENCE) -> Control:
    """A positive control: paired differences on a small task built so that the claim's mechanism must show
    (oriented: positive = the mechanism shows). Passes when the interval's lower end lies above 0."""
    mean, low, high = paired_interval(diffs, confidence)
    text = f"{_fmt(mean)} [{_fmt(low)}, {_fmt(high)}] over {len(diffs)} seeds"
    ok = math.isfinite(low) and low > 0
    return Control(name, ok, f"the mechanism shows: {text}" if ok else f"the mechanism does not show: {text}")


def oriented(claim: Claim, diffs: Sequence[float]) -> np.ndarray:
    """``diffs`` (method − reference, as measured) turned into gains in the claimed direction."""
    x = np.asarray(diffs, dtype=float)
    return x if claim.direction == "higher" else -x


def judge(claim: Claim, diffs: Sequence[float], controls: Sequence[Control] = (),
          confidence: float = CONFIDENCE) -> Verdict:
    """The verdict on ``claim`` from per-seed paired differences ``diffs`` (method − reference, as measured;
    oriented here by ``claim.direction``) and the ``controls`` that must pass first (see the module doc)."""
    gains = oriented(claim, diffs)
    n = int(gains.size)
    mean, low, high = paired_interval(gains, confidence) if np.all(np.isfinite(gains)) else (math.nan,) * 3

    def out(verdict: str, reason: str) -> Verdict:
        return Verdict(verdict, reason, n, mean, low, high)  # type: ignore[arg-type]

    if not np.all(np.isfinite(gains)):
        bad = [i for i, g in enumerate(gains) if not math.isfinite(g)]
        return out("inconclusive", f"non-finite difference at seed index {bad}")
    if n < MIN_SEEDS:
        return out("inconclusive", f"too few seeds (n={n} < {MIN_SEEDS})")
    failed = [c for c in controls if not c.passed]
    if failed:
        return out("inconclusive", "; ".join(f"control failed: {c.name} — {c.detail}" for c in failed))
    pct = f"{confidence:.0%}"
    eff = f"{claim.smallest_effect:.4g}{' ' + claim.unit if claim.unit else ''}"
    span = f"{pct} interval [{_fmt(low)}, {_fmt(high)}]"
    if low > 0:
        small = "" if high >= claim.smallest_effect else f"; below the smallest effect {eff}, a gain too small to count"
        return out("holds", f"{span} lies above 0 in the claimed direction{small}")
    if high < claim.smallest_effect:
        return out("does not hold", f"{span} lies below the smallest effect {eff}")
    return out("inconclusive", f"interval too wide ({span} crosses 0 and the smallest effect {eff})")


def _commit() -> str:
    try:
        res = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return res.stdout.strip() if res.returncode == 0 and res.stdout.strip() else "unknown"


def _number(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def claim_record(claim: Claim, diffs: Sequence[float], verdict: Verdict, controls: Sequence[Control],
                 scale: dict, per_seed: dict | None = None, extra: dict | None = None, *,
                 confidence: float = CONFIDENCE, commit: str | None = None, date: str | None = None) -> dict:
    """One claim's result as the JSON record ``repflow claims`` reads (schema :data:`SCHEMA`).

    ``per_seed_diffs`` are the differences as measured (method − reference); ``mean`` and ``interval`` are
    the gain in the claimed direction (sign flipped where lower is better), as the verdict judged them.
    ``scale`` says what the run was (``data``, ``model``, ``steps``, ``device``, ...); ``per_seed`` may hold
    each arm's raw per-seed values; ``extra`` anything else worth keeping (e.g. the source file)."""
    return {
        "schema": SCHEMA, "id": claim.id, "family": claim.family, "paper": claim.paper, "claim": claim.statement,
        "metric": claim.metric, "direction": claim.direction, "smallest_effect": claim.smallest_effect,
        "unit": claim.unit, "methods": list(claim.methods), "seeds": len(diffs),
        "per_seed_diffs": [_number(float(d)) for d in diffs], "mean": _number(verdict.mean),
        "interval": [_number(verdict.low), _number(verdict.high)], "confidence": confidence,
        "interval_method": INTERVAL_METHOD,
        "controls": [{"name": c.name, "passed": bool(c.passed), "detail": c.detail} for c in controls],
        "verdict": verdict.verdict, "reason": verdict.reason, "scale": dict(scale),
        "per_seed": per_seed or {}, "extra": extra or {},
        "commit": commit or _commit(), "date": date or dt.datetime.now(dt.timezone.utc).date().isoformat(),
    }


def claim_path(results_dir: str | Path, claim_id: str) -> Path:
    """Where :func:`write_claim` puts a claim's record: ``<results_dir>/claims/<claim_id>.json``."""
    return Path(results_dir) / "claims" / f"{claim_id}.json"


def write_claim(record: dict, results_dir: str | Path) -> Path:
    """Write ``record`` to ``<results_dir>/claims/<id>.json`` atomically (a temporary sibling renamed into
    place, so a reader never sees half a file); returns the path."""
    path = claim_path(results_dir, record["id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(record, indent=1, ensure_ascii=False, allow_nan=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

