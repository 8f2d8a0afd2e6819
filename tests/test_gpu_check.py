"""The GPU check's per-family harness (benchmarks/_family_checks.py), run CPU against CPU so it cannot rot
when a family's model API changes: every check must run and agree bitwise, and the comparison must fail
when a result really differs."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from benchmarks._family_checks import FAMILY_CHECKS, RTOL, StepResult, compare, relative_difference, run_check

FAMILIES = sorted(p.parent.name for p in (Path(__file__).resolve().parent.parent / "repflow" / "families").glob(
    "*/__init__.py"))


def test_every_family_has_a_check():
    checked = {name.split("/")[0] for name in FAMILY_CHECKS}
    assert set(FAMILIES) <= checked, f"families without a GPU check: {sorted(set(FAMILIES) - checked)}"
    assert "attacks" in checked


UNTRAINED = ("attacks/", "sr/bicubic")  # an attack has no training step; bicubic has no parameters


@pytest.mark.parametrize("name", list(FAMILY_CHECKS))
def test_family_check_agrees_exactly_cpu_vs_cpu(name, monkeypatch):
    steps = []
    adam_step = torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a, **k: steps.append(1) or adam_step(self, *a, **k))
    row = run_check(name, "cpu", "cpu", rtol=0.0)
    assert row["agree"], row
    assert (row["loss"], row["state"], row["outputs"]) == (0.0, 0.0, 0.0)
    if not name.startswith(UNTRAINED):  # the check really trains, on each of the two devices
        assert len(steps) >= 2, f"{name}: {len(steps)} optimiser steps"


def _result() -> StepResult:
    g = torch.Generator().manual_seed(0)
    return StepResult(torch.tensor([0.7], dtype=torch.float64),
                      {"model.weight": torch.randn(16, 8, generator=g), "model.bias": torch.randn(16, generator=g),
                       "model.steps": torch.tensor(1)},
                      {"logits": torch.randn(4, 3, generator=g)})


def _perturbed(part: str, key: str, relative: float) -> StepResult:
    r = _result()
    tensors = {"loss": r.loss} if part == "loss" else getattr(r, part)
    t = tensors[key]
    t.view(-1)[0] += relative * float(t.norm())
    return r


@pytest.mark.parametrize("part,key", [("loss", "loss"), ("state", "model.weight"), ("outputs", "logits")])
def test_compare_fails_on_a_perturbed_value_and_passes_on_rounding(part, key):
    far = compare(_result(), _perturbed(part, key, 10 * RTOL), RTOL)
    assert not far["agree"] and far["first over"] == f"{part}:{key}"
    assert far[part] == pytest.approx(10 * RTOL, rel=0.05)
    near = compare(_result(), _perturbed(part, key, RTOL / 10), RTOL)
    assert near["agree"], near
    assert compare(_result(), _result(), 0.0)["agree"]


def test_relative_difference_is_pooled_and_strict_on_integers_names_and_shapes():
    a = {"w": torch.tensor([3.0, 4.0]), "b": torch.tensor([0.0])}
    rel, worst = relative_difference(a, {"w": torch.tensor([3.0, 4.0]), "b": torch.tensor([0.5])})
    assert rel == pytest.approx(0.5 / math.sqrt(25.25)) and worst == "b"
    assert relative_difference({"n": torch.tensor(1)}, {"n": torch.tensor(2)})[0] == math.inf
    assert relative_difference(a, {"w": a["w"]})[0] == math.inf
    assert relative_difference({"w": torch.zeros(2)}, {"w": torch.zeros(3)})[0] == math.inf
    assert relative_difference({"w": torch.tensor([1.0])}, {"w": torch.tensor([math.nan])})[0] == math.inf
