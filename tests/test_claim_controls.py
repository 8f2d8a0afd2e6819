"""The image claims' positive controls (benchmarks.rcs, benchmarks.acl_attack_mode) at tiny size: a broken
mechanism (a sign error in RCS's gain, crafting that no longer runs in eval mode) fails here without running a
benchmark. Each seed runs in about a second on one CPU thread."""
from __future__ import annotations

import pytest
import torch

from benchmarks import acl_attack_mode, rcs
from repflow.families.image import coreset

SEEDS = range(3)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: torch on one thread


def test_redundant_images_hold_half_near_copies():
    g = torch.Generator().manual_seed(0)
    originals = rcs.smooth_images(3, 12, g)
    images = rcs.redundant_images(40, originals, g)
    assert images.shape == (40, 1, 12, 12) and images.dtype == torch.uint8
    flat = images.flatten(1).float()
    near = (torch.cdist(flat, flat, p=1) / flat.shape[1] < 4).sum(1) > 1
    assert int(near.sum()) == 20


@pytest.mark.slow  # trains for seconds: the full suite runs it, the fast loop does not
def test_rcs_control_picks_beat_random_picks_on_the_divergence():
    """Every seed (5 of 5 positive: p = 1/32 with no effect); the benchmark's 10 seeds judge it by the rule."""
    rows = [rcs.control_task(seed) for seed in range(5)]
    assert all(r["U random - rcs"] > 0 for r in rows), [r["U random - rcs"] for r in rows]
    assert all(r["U rcs"] < r["U before"] for r in rows)


@pytest.mark.slow  # trains for seconds: the full suite runs it, the fast loop does not
def test_rcs_control_fails_when_the_gain_is_reversed(monkeypatch):
    """The greedy picking the batches with the least predicted drop must lose to random: the control can fail."""
    original = coreset.select_coreset_rcs

    def worst_first(encoder, head, images, val, *, gradients=None, **kwargs):
        return original(encoder, head, images, val, gradients=-gradients, **kwargs)

    monkeypatch.setattr(rcs, "select_coreset_rcs", worst_first)
    rows = [{"seed": s, **rcs.control_task(s)} for s in SEEDS]
    assert all(r["U random - rcs"] < 0 for r in rows), [r["U random - rcs"] for r in rows]
    assert not rcs.control_check(rows).passed


@pytest.mark.slow  # trains for seconds: the full suite runs it, the fast loop does not
def test_acl_control_eval_mode_crafting_is_stronger_and_leaves_statistics_alone():
    rows = [{"seed": s, **acl_attack_mode.control_task(s)} for s in SEEDS]
    assert all(r["new adv stats moved"] == 0 and r["old adv stats moved"] > 0 for r in rows)
    for check in acl_attack_mode.control_checks(rows):
        assert check.passed, check.detail


@pytest.mark.slow  # trains for seconds: the full suite runs it, the fast loop does not
def test_acl_control_fails_when_both_modes_craft_in_train_mode(monkeypatch):
    monkeypatch.setitem(acl_attack_mode.CRAFT, "new", acl_attack_mode.pgd_contrastive_train_mode)
    rows = [{"seed": s, **acl_attack_mode.control_task(s)} for s in SEEDS]
    assert all(r["new adv stats moved"] > 0 for r in rows)
    assert not any(c.passed for c in acl_attack_mode.control_checks(rows))
