"""The verdict rule (repflow.verdict): the t interval, each branch of the rule, the controls, the record, and the
rule's error rates on simulated data (no true effect: "holds" in about 2.5 % of draws; a large effect: "holds")."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from repflow.verdict import (MIN_SEEDS, SCHEMA, Claim, Control, claim_record, judge, paired_interval,
                             positive_control, separation_check, write_claim)

CLAIM = Claim("test.gain", "image", "Someone et al. 2024", "The method beats the reference.", "accuracy",
              "higher", 0.01, unit="acc", methods=("m",))
LOWER = Claim("test.loss", "image", "p", "The method lowers the loss.", "loss", "lower", 0.5, unit="nats")


def test_the_interval_is_students_t_on_the_paired_differences():
    x = np.array([0.3, -0.1, 0.5, 0.2, 0.05, 0.4, 0.1])
    mean, low, high = paired_interval(x)
    ref_low, ref_high = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert mean == pytest.approx(x.mean()) and low == pytest.approx(ref_low) and high == pytest.approx(ref_high)
    _, low90, high90 = paired_interval(x, confidence=0.9)
    assert low < low90 < high90 < high
    assert paired_interval([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    m1, l1, h1 = paired_interval([1.5])
    assert m1 == 1.5 and math.isnan(l1) and math.isnan(h1)
    assert all(math.isnan(v) for v in paired_interval([]))


def test_a_claim_refuses_a_bad_declaration():
    with pytest.raises(ValueError, match="direction 'up'"):
        Claim("a", "f", "p", "s", "m", "up", 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="smallest_effect 0"):
        Claim("a", "f", "p", "s", "m", "higher", 0)
    with pytest.raises(ValueError, match="claim id 'A B'"):
        Claim("A B", "f", "p", "s", "m", "higher", 1.0)


def test_each_branch_of_the_rule():
    v = judge(CLAIM, [0.02, 0.03, 0.025, 0.04])
    assert (v.verdict, v.reason, v.n) == ("inconclusive", f"too few seeds (n=4 < {MIN_SEEDS})", 4)
    assert v.mean == pytest.approx(0.02875)  # the numbers are still reported

    v = judge(CLAIM, [0.02, 0.03, 0.025, 0.04, 0.035])
    assert v.verdict == "holds" and v.low > 0 and "lies above 0" in v.reason

    v = judge(CLAIM, [0.001, -0.001, 0.0, 0.002, -0.002, 0.0005])
    assert v.verdict == "does not hold" and v.high < 0.01 and "below the smallest effect 0.01 acc" in v.reason

    v = judge(CLAIM, [-0.05, 0.06, 0.01, -0.03, 0.04])
    assert v.verdict == "inconclusive" and v.reason.startswith("interval too wide (95% interval [")
    assert "crosses 0 and the smallest effect" in v.reason

    v = judge(CLAIM, [0.02, float("nan"), 0.03, 0.02, 0.01])
    assert v.verdict == "inconclusive" and "non-finite" in v.reason and math.isnan(v.mean)


def test_a_lower_is_better_claim_is_judged_on_the_flipped_differences():
    v = judge(LOWER, [-1.0, -1.2, -0.9, -1.1, -1.05])  # method − reference: the loss went down
    assert v.verdict == "holds" and v.mean == pytest.approx(1.05)
    assert judge(LOWER, [1.0, 1.2, 0.9, 1.1, 1.05]).verdict == "does not hold"


def test_a_failed_control_turns_a_would_be_holds_into_inconclusive_naming_it():
    diffs = [0.02, 0.03, 0.025, 0.04, 0.035]
    ok = Control("positive: duplicates", True, "fine")
    assert judge(CLAIM, diffs, [ok]).verdict == "holds"
    bad = Control("positive: duplicates", False, "the mechanism does not show")
    v = judge(CLAIM, diffs, [ok, bad])
    assert v.verdict == "inconclusive"
    assert v.reason == "control failed: positive: duplicates — the mechanism does not show"
    assert judge(CLAIM, diffs[:3], [bad]).reason.startswith("too few seeds")  # too few seeds is said first


def test_the_floor_ceiling_check_names_floor_or_ceiling_with_its_numbers():
    weak = [0.25, 0.26, 0.24, 0.25, 0.25]
    sep = separation_check(weak, [0.6, 0.62, 0.58, 0.61, 0.6], 0.01, name="untrained vs supervised")
    assert sep.passed and sep.name == "untrained vs supervised" and "weak reference (floor) 0.25" in sep.detail

    floor = separation_check(weak, [0.255, 0.25, 0.245, 0.26, 0.25], 0.01, chance=0.25)
    assert not floor.passed and floor.detail.startswith("floor: ") and "chance 0.25" in floor.detail
    v = judge(CLAIM, [0.02, 0.03, 0.025, 0.04, 0.035], [floor])
    assert v.verdict == "inconclusive" and v.reason.startswith("control failed: floor/ceiling — floor: ")

    ceiling = separation_check([1.0, 0.999, 1.0, 1.0, 1.0], [1.0] * 5, 0.01, best=1.0)
    assert not ceiling.passed and ceiling.detail.startswith("ceiling: ")
    with pytest.raises(ValueError, match="paired by seed"):
        separation_check([1, 2], [1, 2, 3], 0.1)


def test_a_positive_control_passes_when_its_interval_is_above_zero():
    assert positive_control([0.2, 0.3, 0.25, 0.22, 0.28]).passed
    assert not positive_control([0.2, -0.3, 0.25, -0.22, 0.08]).passed


def _holds_rate(effect: float, n: int, draws: int, seed: int, sd: float = 1.0, smallest: float = 1.0) -> dict:
    rng = np.random.default_rng(seed)
    claim = Claim("sim", "f", "p", "s", "m", "higher", smallest)
    verdicts = [judge(claim, rng.normal(effect, sd, n)).verdict for _ in range(draws)]
    return {v: verdicts.count(v) / draws for v in ("holds", "does not hold", "inconclusive")}


@pytest.mark.slow
@pytest.mark.parametrize("n", [5, 10])
def test_with_no_true_effect_the_rule_says_holds_in_about_2_5_percent_of_draws(n):
    rate = _holds_rate(0.0, n, 4000, seed=n)["holds"]
    assert 0.015 <= rate <= 0.035, rate


@pytest.mark.parametrize("n", [5, 10])
def test_with_a_large_effect_the_rule_says_holds(n):
    assert _holds_rate(3.0, n, 1000, seed=100 + n)["holds"] > 0.95


def test_with_no_true_effect_and_tight_noise_the_rule_says_does_not_hold():
    rates = _holds_rate(0.0, 5, 1000, seed=7, sd=0.05, smallest=1.0)
    assert rates["does not hold"] > 0.95 and rates["holds"] < 0.05


def test_the_record_has_every_field_and_is_written_atomically(tmp_path):
    diffs = [0.02, 0.03, 0.025, 0.04, 0.035]
    controls = [Control("positive", True, "ok")]
    v = judge(CLAIM, diffs, controls)
    rec = claim_record(CLAIM, diffs, v, controls, {"data": "toy", "model": "cnn", "steps": 10, "device": "cpu"},
                       per_seed={"m": [1, 2, 3, 4, 5]}, extra={"source": "x.json"}, commit="abc1234",
                       date="2024-01-02")
    assert rec["schema"] == SCHEMA and rec["id"] == "test.gain" and rec["seeds"] == 5
    assert rec["interval"] == [pytest.approx(v.low), pytest.approx(v.high)] and rec["verdict"] == "holds"
    assert rec["controls"] == [{"name": "positive", "passed": True, "detail": "ok"}]
    assert rec["interval_method"].startswith("student-t") and rec["confidence"] == 0.95
    path = write_claim(rec, tmp_path)
    assert path == tmp_path / "claims" / "test.gain.json"
    assert json.loads(path.read_text()) == rec and [p.name for p in path.parent.iterdir()] == ["test.gain.json"]

    short = judge(CLAIM, [0.1])  # nan bounds are written as null, never as NaN
    rec = claim_record(CLAIM, [0.1], short, [], {})
    assert rec["interval"] == [None, None] and len(rec["commit"]) > 0 and len(rec["date"]) == 10
    json.loads(write_claim(rec, tmp_path).read_text())


@pytest.mark.slow
def test_the_rule_imports_without_torch_or_the_runtime():
    import subprocess
    import sys

    from tests.conftest import REPO

    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'prefect', 'mlflow', 'ray', 'pydantic'):\n"
            "            raise ImportError(name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import repflow.verdict, repflow.claims\n")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)
