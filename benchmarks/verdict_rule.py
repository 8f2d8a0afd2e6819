"""The verdict rule (repflow.verdict.judge) on simulated paired differences: how often it says each verdict.

Per seed count n (5, 10) and ratio r = smallest effect / noise sd (0.5, 1, 2), normal per-seed differences with
sd 1 and the smallest effect r:

- no true effect (mean 0): the rate of a false "holds" (should be about 2.5 %: the lower end of a two-sided
  95 % interval lies above 0), and of "does not hold" (the right call when the smallest effect counts);
- a true effect equal to the smallest effect: the power (rate of "holds");
- a true effect of twice the smallest effect.

For comparison, the rule it replaces (3 seeds of one sign and |mean| > sd, called "beyond noise") is simulated
with no true effect as well. Takes seconds.

    python -m benchmarks.verdict_rule [--draws 10000] [--seed 0]
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

from benchmarks._common import write_results
from repflow.verdict import Claim, judge

NS = (5, 10)
RATIOS = (0.5, 1.0, 2.0)


def rates(n: int, effect: float, smallest: float, draws: int, rng: np.random.Generator) -> dict[str, float]:
    claim = Claim("sim", "sim", "sim", "simulated", "m", "higher", smallest)
    verdicts = [judge(claim, rng.normal(effect, 1.0, n)).verdict for _ in range(draws)]
    return {v: verdicts.count(v) / draws for v in ("holds", "does not hold", "inconclusive")}


def old_rule_false_rate(n: int, draws: int, rng: np.random.Generator) -> float:
    """The replaced rule (every difference of one sign and |mean| > sd) with no true effect."""
    x = rng.normal(0.0, 1.0, (draws, n))
    same_sign = np.all(x > 0, axis=1) | np.all(x < 0, axis=1)
    return float(np.mean(same_sign & (np.abs(x.mean(axis=1)) > x.std(axis=1, ddof=1))))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    start = time.perf_counter()
    rows = []
    for n in NS:
        for r in RATIOS:
            null = rates(n, 0.0, r, a.draws, rng)
            at = rates(n, r, r, a.draws, rng)
            twice = rates(n, 2 * r, r, a.draws, rng)
            rows.append({"seeds": n, "smallest effect / sd": r, "no effect: holds": null["holds"],
                         "no effect: does not hold": null["does not hold"],
                         "no effect: inconclusive": null["inconclusive"], "effect = smallest: holds": at["holds"],
                         "effect = 2× smallest: holds": twice["holds"]})
    old = {n: old_rule_false_rate(n, a.draws, rng) for n in (3, 5)}
    seconds = time.perf_counter() - start
    se = math.sqrt(0.025 * 0.975 / a.draws)
    notes = [
        f"{a.draws} draws per cell, normal per-seed differences with sd 1, numpy seed {a.seed}; {seconds:.1f} s.",
        "Rule: repflow.verdict.judge (Student-t 95 % interval on the paired differences; holds when its lower end "
        "> 0, does not hold when its upper end < the smallest effect, else inconclusive).",
        f"Monte Carlo standard error of a 2.5 % rate: {se:.4f}.",
        f"The replaced rule ('beyond noise': all differences of one sign and |mean| > sd), no true effect: called "
        f"an effect in {old[3]:.3f} of draws with 3 seeds, {old[5]:.3f} with 5 (either sign).",
        "Power is the rate of 'holds' when the true gain equals the smallest effect; with 5 seeds and an effect of "
        "half the noise sd it is low, so such a claim needs more seeds (or less noise) to be judged.",
    ]
    write_results("verdict_rule", "The verdict rule on simulated paired differences", rows, notes,
                  extra={"args": vars(a), "old_rule_false_rate": {str(k): v for k, v in old.items()},
                         "seconds": seconds})


if __name__ == "__main__":
    main()
