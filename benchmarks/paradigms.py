"""The SSL survey's paradigms side by side (issue 20): ``repflow compare`` on the default data, then the
survey's three observations checked on its table with paired per-seed differences.

Observations (Liu et al., "Self-supervised Learning: Generative or Contrastive"):
1. contrastive methods lead linear-probe accuracy;
2. generative pretexts do comparatively better with few labels and in reconstruction-heavy settings (the
   contrastive lead shrinks from the full linear probe to 1 label per class; a generative pretext's
   features recover more of the pixels);
3. adversarial training buys robustness at a clean-accuracy and time cost (ACL vs SimCLR).

Same start for every arm (``repflow compare``): per seed one initial encoder, the same shards, optimiser,
batch size and augmentations from ``params.yaml``'s ``train`` section, the same budget, the same probes.
Mechanism first, each method against its seed's untrained initial encoder (``init``, batch-norm statistics
measured) on what its own objective trains for: the contrastive methods on the linear probe (invariant,
discriminative features), the masked autoencoder on reconstruction R² (it keeps the pixels), BiGAN on the
linear probe (its encoder is meant to invert the generator; this table has no direct measure of that,
benchmarks/results/pretext_mechanism.md has), and ACL against SimCLR under PGD (the robustness its inner
maximisation trains for). An observation on a method that fails its check is reported as not testable,
not as refuted.

Each claim's controls: the positive control (both methods of its pair beat their init on what their own
objective trains for) and the floor check (:data:`FLOOR`: a trained reference separates from the untrained
``init`` on the claim's own metric by more than the smallest effect, or the metric cannot see training at
all at this scale).

    python -m benchmarks.paradigms --workdir /tmp/paradigms [--epochs 20 | --seconds 120] [--seeds 0 1 2 3 4]
        [--methods simclr masked_ae acl] [-P prep.per_class=100 ...]

A claim whose pair is not among ``--methods`` is not judged; its record stays as it was (a note says so).
    python -m benchmarks.paradigms --workdir /tmp/paradigms --no-run   # re-read the last compare output
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from benchmarks._common import RESULTS, Tested, mean_std, write_claims, write_results
from repflow.families.image.stages.compare import summarise, summary_rows
from repflow.manifest import read_manifest
from repflow.report import markdown_table
from repflow.verdict import Claim, judge, positive_control, separation_check

ROOT = Path(__file__).resolve().parents[1]
CONTRASTIVE = ("simclr", "genrep", "acl")
GENERATIVE = ("masked_ae",)
GENERATIVE_CONTRASTIVE = ("bigan",)
MECHANISM = {"masked_ae": "reconstruction_r2"}
"""The metric a method's own objective should raise above ``init``'s; linear_acc for the others."""
SMALLEST = {"train_cpu_seconds": 10.0, "epochs": 0.5}
"""Smallest effect per metric for the check rows; 0.01 (one point of accuracy, R² or success rate) otherwise."""

SURVEY = "Liu et al. 2021, 'Self-supervised Learning: Generative or Contrastive' (TKDE)"
# declared before the run: the survey's observations on one canonical pair each, (a, b, metric) → claim
CLAIMS = {
    ("simclr", "masked_ae", "linear_acc"): Claim(
        "image.survey_contrastive_leads_probe", "image", SURVEY, "Contrastive pretraining (SimCLR) leads a "
        "generative pretext (masked autoencoder) on the linear probe.", "linear-probe accuracy", "higher", 0.01,
        "accuracy", ("simclr",)),
    ("masked_ae", "simclr", "reconstruction_r2"): Claim(
        "image.survey_generative_keeps_pixels", "image", SURVEY, "A generative pretext (masked autoencoder) keeps "
        "more of the pixels in its features than contrastive pretraining (SimCLR).", "reconstruction R²",
        "higher", 0.01, "R²", ("masked_ae",)),
    ("simclr", "masked_ae", "lead_shrink"): Claim(
        "image.survey_lead_shrinks_few_labels", "image", SURVEY, "The contrastive lead over a generative pretext "
        "shrinks from the full linear probe to 1 label per class.", "lead(linear) − lead(1 label per class)",
        "higher", 0.01, "accuracy", ("masked_ae",)),
    ("acl", "simclr", "robust_acc"): Claim(
        "image.survey_adversarial_robust", "image", SURVEY, "Adversarial contrastive training (ACL) buys "
        "robustness over SimCLR.", "PGD accuracy", "higher", 0.01, "accuracy", ("acl",)),
    ("acl", "simclr", "linear_acc"): Claim(
        "image.survey_adversarial_clean_cost", "image", SURVEY, "Adversarial contrastive training (ACL) costs "
        "clean linear-probe accuracy against SimCLR.", "linear-probe accuracy", "lower", 0.01, "accuracy",
        ("acl",)),
}


FLOOR = {("simclr", "masked_ae", "linear_acc"): ("simclr", "linear_acc"),
         ("masked_ae", "simclr", "reconstruction_r2"): ("masked_ae", "reconstruction_r2"),
         ("simclr", "masked_ae", "lead_shrink"): ("simclr", "few_label_1"),
         ("acl", "simclr", "robust_acc"): ("acl", "robust_acc"),
         ("acl", "simclr", "linear_acc"): ("simclr", "linear_acc")}
"""Per claim, the trained reference and metric of its floor check against the untrained ``init``: the
claim's metric must see training at all (the 1-label probe for the lead's shrink)."""


def judged(payload: dict) -> list[Tested]:
    """The survey's observations from a compare table (``table`` rows, as paradigms.json stores them; ``params``:
    the ``-P`` overrides of the run, if any). Controls: the positive control (each method of the pair beats its
    seed's untrained encoder on what its own objective trains for) and the floor check of :data:`FLOOR`."""
    table = pl.DataFrame(payload["table"])
    epochs = sorted({r["epochs"] for r in payload["table"] if r["method"] != "init"})
    overrides = payload.get("params") or []
    scale = {"data": "Fashion-MNIST (params.yaml prep" + "".join(f", {o}" for o in overrides if o.startswith("prep."))
             + ")", "model": "params.yaml train encoder" + "".join(f", {o}" for o in overrides
                                                                   if not o.startswith("prep.")),
             "steps": f"{'/'.join(f'{e:g}' for e in epochs)} epochs", "device": "cpu",
             "methods": ", ".join(dict.fromkeys(r["method"] for r in payload["table"]))}
    methods = set(table["method"])
    out = []
    for (a, b, metric), claim in CLAIMS.items():
        if not {a, b, "init"} <= methods:
            continue
        controls = tuple(positive_control(paired(table, m, "init", MECHANISM.get(m, "linear_acc")),
                                          name=f"positive control: {m} beats its init on "
                                               f"{MECHANISM.get(m, 'linear_acc')}")
                         for m in (a, b))
        strong, floor_metric = FLOOR[(a, b, metric)]
        weak_scores = [r[floor_metric] for r in table.filter(pl.col("method") == "init").sort("seed").to_dicts()]
        strong_scores = [r[floor_metric] for r in table.filter(pl.col("method") == strong).sort("seed").to_dicts()]
        controls += (separation_check(weak_scores, strong_scores, claim.smallest_effect,
                                      name=f"floor: init vs {strong} on {floor_metric}"),)
        if metric == "lead_shrink":
            full, few = paired(table, a, b, "linear_acc"), paired(table, a, b, "few_label_1")
            diffs = [f - g for f, g in zip(full, few)]
        else:
            diffs = paired(table, a, b, metric)
        out.append(Tested(claim, diffs, controls, scale, extra={"pair": [a, b]}))
    return out


def paired(table: pl.DataFrame, a: str, b: str, metric: str) -> list[float]:
    """Per-seed ``metric(a) − metric(b)`` over the seeds both arms ran."""
    left = table.filter(pl.col("method") == a).select("seed", pl.col(metric).alias("a"))
    right = table.filter(pl.col("method") == b).select("seed", pl.col(metric).alias("b"))
    joined = left.join(right, on="seed").sort("seed")
    return [x - y for x, y in zip(joined["a"], joined["b"])]


def verdict(diffs: list[float], sign: int, metric: str) -> str:
    """The rule of :func:`repflow.verdict.judge` on a check row (``sign`` +1: a gain is a rise), with its reason
    when inconclusive."""
    claim = Claim("paradigms.check", "image", SURVEY, "check", metric, "higher" if sign > 0 else "lower",
                  SMALLEST.get(metric, 0.01))
    v = judge(claim, diffs)
    return v.verdict if v.verdict != "inconclusive" else f"inconclusive: {v.reason}"


def fmt(diffs: list[float]) -> str:
    m, sd = mean_std(diffs)
    return f"{m:+.3f} ± {sd:.3f} ({', '.join(f'{d:+.3f}' for d in diffs)})"


def analyse(table: pl.DataFrame, seconds_budget: bool = False) -> tuple[list[dict], list[str]]:
    """The check rows and notes. Under a budget in seconds the time cost shows as fewer epochs, not as
    more seconds."""
    methods = set(table["method"])
    rows, notes = [], []
    learned = {}
    for m in sorted(methods - {"init"}):
        for metric in dict.fromkeys([MECHANISM.get(m, "linear_acc"), "linear_acc"]):
            d = paired(table, m, "init", metric)
            own = metric == MECHANISM.get(m, "linear_acc")
            if own:
                learned[m] = positive_control(d).passed
            rows.append({"check": f"{'mechanism' if own else 'for scale'}: beats its init", "a": m, "b": "init",
                         "metric": metric, "a - b per seed": fmt(d), "verdict": verdict(d, +1, metric)})
    if {"acl", "simclr"} <= methods:
        d = paired(table, "acl", "simclr", "robust_acc")
        rows.append({"check": "mechanism / obs. 3: adversarial training is more robust", "a": "acl", "b": "simclr",
                     "metric": "robust_acc", "a - b per seed": fmt(d), "verdict": verdict(d, +1, "robust_acc")})
        time_cost = (("epochs", -1, "time cost: fewer epochs in the same CPU time") if seconds_budget
                     else ("train_cpu_seconds", +1, "time cost"))
        for metric, sign, what in (("linear_acc", -1, "clean-accuracy cost"), time_cost,
                                   ("transfer_success", -1, "fewer transferred attacks succeed")):
            d = paired(table, "acl", "simclr", metric)
            rows.append({"check": f"obs. 3: {what}", "a": "acl", "b": "simclr", "metric": metric,
                         "a - b per seed": fmt(d), "verdict": verdict(d, sign, metric)})
    others = sorted(methods & set(GENERATIVE + GENERATIVE_CONTRASTIVE))
    for c in sorted(methods & set(CONTRASTIVE)):
        for o in others:
            testable = learned.get(c) and learned.get(o)
            d = paired(table, c, o, "linear_acc")
            rows.append({"check": "obs. 1: contrastive leads the linear probe", "a": c, "b": o, "metric": "linear_acc",
                         "a - b per seed": fmt(d),
                         "verdict": verdict(d, +1, "linear_acc") if testable else "not testable"})
            few = min(int(col.rsplit("_", 1)[1]) for col in table.columns if col.startswith("few_label_"))
            gap_full = paired(table, c, o, "linear_acc")
            gap_few = paired(table, c, o, f"few_label_{few}")
            shrink = [f - g for f, g in zip(gap_full, gap_few)]
            rows.append({"check": f"obs. 2: the contrastive lead shrinks at {few} label(s) per class", "a": c, "b": o,
                         "metric": f"lead(linear) - lead(few_label_{few})", "a - b per seed": fmt(shrink),
                         "verdict": verdict(shrink, +1, "lead") if testable else "not testable"})
            d = paired(table, o, c, "reconstruction_r2")
            rows.append({"check": "obs. 2: generative keeps more of the pixels", "a": o, "b": c,
                         "metric": "reconstruction_r2", "a - b per seed": fmt(d),
                         "verdict": verdict(d, +1, "reconstruction_r2") if testable else "not testable"})
    notes.append("Verdicts use repflow.verdict.judge (Student-t 95 % interval on the paired per-seed differences, "
                 "at least 5 seeds; smallest effect 0.01, 10 CPU s, 0.5 epochs). 'not testable': a method in the "
                 "pair did not beat its untrained initial encoder on what its own objective trains for (the "
                 "mechanism rows: the interval's lower end above 0), so the claim is not judged on it at this budget.")
    return rows, notes


def not_rejudged(judged_ids: set[str]) -> list[str]:
    """One note per claim of :data:`CLAIMS` that this run could not judge (a method of its pair was not
    compared): its record is left as it stands, judged on the run its ``source`` names."""
    notes = []
    for (a, b, _), claim in CLAIMS.items():
        if claim.id in judged_ids:
            continue
        path = RESULTS / "claims" / f"{claim.id}.json"
        record = json.loads(path.read_text()) if path.is_file() else {}
        notes.append(f"Claim `{claim.id}` not judged in this run ({a} and {b} not both compared): its record "
                     f"stays **{record.get('verdict', 'absent')}** as judged on "
                     f"{record.get('extra', {}).get('source', 'no run')}.")
    return notes


PINNED = ("prep.image_format=png", "prep.train_order=source", "train.encoder=small_cnn", "evaluate.compile=false",
          "transfer.compile=false")
"""The recorded runs' settings of params whose params.yaml defaults changed since (issue 34's fast defaults),
passed before the run's own ``-P`` overrides, so the benchmark keeps its protocol whatever params.yaml says."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", required=True, help="work folder (params.yaml is copied in when absent)")
    budget = ap.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int)
    budget.add_argument("--seconds", type=float)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--methods", nargs="+", help="compare these methods (default: compare.methods)")
    ap.add_argument("-P", dest="params", action="append", default=[], metavar="KEY=VALUE",
                    help="a repflow compare override, e.g. -P prep.per_class=100 (repeatable; recorded in the scale)")
    ap.add_argument("--name", default="paradigms", help="results/<name>.md")
    ap.add_argument("--no-run", action="store_true", help="analyse the workdir's last compare output only")
    args = ap.parse_args()
    ws = Path(args.workdir)
    ws.mkdir(parents=True, exist_ok=True)
    if not (ws / "params.yaml").exists():
        (ws / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    cmd = [sys.executable, "-m", "repflow", "compare", "--workdir", str(ws), "--seeds", *map(str, args.seeds)]
    cmd += ["--epochs", str(args.epochs)] if args.epochs else ["--seconds", str(args.seconds)] if args.seconds else []
    cmd += ["--methods", *args.methods] if args.methods else []
    cmd += [x for o in (*PINNED, *args.params) for x in ("-P", o)]
    out = ws / "reports" / "compare"
    previous = RESULTS / f"{args.name}.json"
    if args.no_run:
        stored = json.loads(previous.read_text()) if previous.is_file() else {}
        wall = stored.get("wall_seconds", float("nan"))
        args.params = args.params or stored.get("params", [])
    else:
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True,
                       env={**os.environ, "REPFLOW_PROGRESS": os.environ.get("REPFLOW_PROGRESS", "0")})
        wall = time.perf_counter() - t0
    table = pl.read_parquet(out / "comparison.parquet")
    summary = summarise(table)  # from the arms, so that a re-read uses the stage's current summary
    budget = read_manifest(out, stage="image.compare")["meta"]["budget"]
    rows, notes = analyse(table, seconds_budget="seconds" in budget)
    header = (out / "comparison.md").read_text().strip().split("\n\n")
    header = "\n\n".join([header[0], markdown_table(summary_rows(summary)), *header[2:]])
    notes = [f"`{' '.join(cmd[2:])}`: {wall / 60:.1f} min wall on this machine (prep, generate and zoo reused when "
             f"cached). The compare table:\n\n{header}\n"] + notes
    if args.name == "paradigms":  # the headline run (equal epochs); other names are variants
        tested = judged({"table": table.to_dicts(), "params": args.params})
        notes += write_claims(tested, args.name)
        notes += not_rejudged({t.claim.id for t in tested})
    write_results(args.name, "Paradigms side by side: the survey's observations on repflow compare", rows, notes,
                  extra={"table": table.to_dicts(), "summary": summary.to_dicts(), "wall_seconds": wall,
                         "params": args.params})


if __name__ == "__main__":
    main()
