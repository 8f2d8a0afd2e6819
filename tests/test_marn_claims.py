"""benchmarks/marn.py's verdicts: the synthetic positive controls and the floor check gate the ml-100k claims."""
from __future__ import annotations

from benchmarks import marn
from repflow.verdict import judge

SEEDS = range(5)
ARGS = {"dim": 16, "hidden": [64, 32], "epochs": 10, "patience": 2, "batch_size": 256, "synthetic_items": 1200,
        "synthetic_epochs": 30}


def payload(marn_gain: float, syn_gain: float, top_share: float, floor_auc: float = 0.60) -> dict:
    real = [{"arm": arm, "seed": s, "auc": 0.70 + 0.001 * s + (marn_gain if arm == "marn" else 0.0)}
            for s in SEEDS for arm in marn.REAL_ARMS]
    syn = [{"arm": arm, "seed": s, "auc": 0.80 + 0.002 * (s % 2) + (syn_gain + 0.001 * s if arm == "marn" else 0.0),
            "top_is_driver": top_share + 0.01 * s} for s in SEEDS for arm in marn.SYNTHETIC_ARMS]
    return {"per_seed": real, "synthetic": syn, "stats_only_auc": floor_auc, "args": ARGS}


def verdicts(p: dict) -> dict[str, str]:
    return {t.claim.id: judge(t.claim, t.diffs, t.controls).verdict for t in marn.judged(p)}


def test_controls_pass_and_the_ml100k_gain_decides():
    v = verdicts(payload(marn_gain=0.01, syn_gain=0.02, top_share=0.6))
    assert v == {"ctr.marn_vs_concat": "holds", "ctr.marn_vs_man": "holds",
                 "ctr.marn_attention_finds_modality": "holds"}
    v = verdicts(payload(marn_gain=0.0, syn_gain=0.02, top_share=0.6))
    assert v["ctr.marn_vs_concat"] == "does not hold"


def test_a_failed_synthetic_control_or_floor_makes_the_real_claims_inconclusive():
    v = verdicts(payload(marn_gain=0.01, syn_gain=-0.02, top_share=0.6))
    assert v["ctr.marn_vs_concat"] == v["ctr.marn_vs_man"] == "inconclusive"
    v = verdicts(payload(marn_gain=0.01, syn_gain=0.02, top_share=0.1))
    assert v["ctr.marn_vs_concat"] == "inconclusive" and v["ctr.marn_attention_finds_modality"] == "does not hold"
    v = verdicts(payload(marn_gain=0.01, syn_gain=0.02, top_share=0.6, floor_auc=0.71))
    assert v["ctr.marn_vs_concat"] == v["ctr.marn_vs_man"] == "inconclusive"
