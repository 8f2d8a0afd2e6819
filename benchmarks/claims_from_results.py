"""Claim records (``results/claims/<id>.json``) from the per-seed numbers already stored in ``results/*.json``,
judged by the one rule (:func:`repflow.verdict.judge`), without re-running any benchmark.

Each benchmark declares its claims and a ``judged(payload)`` that reads its own results file; this script calls
those on the stored payloads, so a re-run of the benchmark and this script give the same record for the same
numbers. Every seed paper gets at least one record: a paper whose results give none gets one saying
"inconclusive: not yet tested under the rule", with no differences.

    python -m benchmarks.claims_from_results [--only marn ami ...]
"""
from __future__ import annotations

import argparse
import importlib
import json

import math

from benchmarks._common import RESULTS, Tested, write_claims
from repflow.verdict import Claim, Verdict, claim_record, write_claim

UNTESTED = "not yet tested under the rule"

SOURCES = {  # results file stem → the benchmark module whose judged() reads it
    "audio_advneg": "benchmarks.audio_advneg",
    "mdvae": "benchmarks.mdvae",
    "svd_transfer": "benchmarks.svd_transfer",
    "rcs": "benchmarks.rcs",
    "acl_attack_mode": "benchmarks.acl_attack_mode",
    "itov": "benchmarks.itov",
    "glad": "benchmarks.glad",
    "shsr": "benchmarks.shsr",
    "genrep": "benchmarks.genrep",
    "paradigms": "benchmarks.paradigms",
    "ami": "benchmarks.ami",
    "marn": "benchmarks.marn",
}

SEED_PAPERS = [  # every paper of the seed abstracts: (module holding its PAPER, the headline claim used when no
    # record tests it: id, family, statement, metric, direction, smallest effect, unit, methods)
    ("benchmarks.audio_advneg", "PAPER", "audio.advneg_untested", "audio", "Adversarial positional negatives "
     "improve audio representations on downstream tasks.", "downstream probe accuracy", "higher", 0.01, "accuracy",
     ("advneg",)),
    ("benchmarks.mdvae", "PAPER", "av.mdvae_untested", "av", "MDVAE's static latent beats unimodal baselines at "
     "few-label emotion recognition.", "emotion accuracy", "higher", 0.02, "accuracy", ("mdvae",)),
    ("benchmarks.svd_transfer", "PAPER", "image.svd_fusion_untested", "image", "Fusing the rank-1 logits raises "
     "black-box transfer success.", "black-box transfer success", "higher", 0.01, "success rate", ("svd_fusion",)),
    ("benchmarks.rcs", "PAPER", "image.rcs_untested", "image", "RCS speeds ACL up without hurting robustness.",
     "robust accuracy", "higher", 0.01, "accuracy", ("rcs",)),
    ("benchmarks.itov", "PAPER", "video.itov_untested", "video", "ItoV adapts image watermarking to video robustly "
     "and efficiently.", "robust bit accuracy", "higher", 0.01, "bit accuracy", ("itov",)),
    ("benchmarks.glad", "PAPER", "image.glad_untested", "image", "Distilling into a generator's latent space "
     "improves cross-architecture generalisation.", "cross-architecture accuracy", "higher", 0.01, "accuracy",
     ("feature",)),
    ("benchmarks.shsr", "PAPER", "sr.shsr_untested", "sr", "SHSR beats state-of-the-art SR networks with fewer "
     "parameters and MACs.", "Y-PSNR", "higher", 0.1, "dB", ("shsr",)),
    ("benchmarks.genrep", "PAPER", "image.genrep_untested", "image", "Latent-space views from a generator make "
     "contrastive representations that rival those learned from real data.", "linear-probe accuracy", "higher",
     0.005, "accuracy", ("genrep",)),
    ("benchmarks.paradigms", "SURVEY", "image.survey_untested", "image", "Contrastive methods lead linear-probe "
     "accuracy.", "linear-probe accuracy", "higher", 0.01, "accuracy", ("simclr",)),
    ("benchmarks.ami", "PAPER", "text.ami_untested", "text", "AMI outperforms MLE and MMI baselines in text "
     "generation.", "BLEU", "higher", 0.5, "BLEU", ("ami",)),
    ("benchmarks.marn", "PAPER", "ctr.marn_untested", "ctr", "MARN beats modality concatenation and attention in "
     "CTR prediction.", "test AUC", "higher", 0.002, "AUC", ("marn",)),
]


def seed_paper_claims() -> list[Claim]:
    """The headline claim of every seed paper, its paper named as the benchmark (and the registry) names it."""
    return [Claim(cid, family, getattr(importlib.import_module(module), attr), statement, metric, direction,
                  smallest, unit, methods)
            for module, attr, cid, family, statement, metric, direction, smallest, unit, methods in SEED_PAPERS]


def from_results(only: list[str] | None = None) -> dict[str, list[Tested]]:
    """The judged claims of each stored results file (stem → its benchmark's ``judged`` on it)."""
    out = {}
    for stem, module in SOURCES.items():
        path = RESULTS / f"{stem}.json"
        if (only and stem not in only) or not path.is_file():
            continue
        payload = json.loads(path.read_text())
        out[stem] = (importlib.import_module(module).judged(payload), payload.get("machine", {}).get("date"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", choices=list(SOURCES), help="only these results files")
    args = ap.parse_args()
    papers = set()
    for stem, (tested, run_date) in from_results(args.only).items():
        extra = {"judged_from": "stored per-seed results (benchmarks/claims_from_results.py); commit and date are "
                                "those of the judging, run_date that of the run", "run_date": run_date}
        for line in write_claims(tested, stem, extra=extra):
            print(line)
        papers |= {t.claim.paper for t in tested}
    if args.only:
        return
    headline = seed_paper_claims()
    for paper in sorted(papers - {c.paper for c in headline}):
        print(f"(not a seed paper, recorded anyway: {paper})")
    for claim in headline:
        if claim.paper not in papers:
            write_untested(claim)
            print(f"{claim.id}: {UNTESTED}")


def write_untested(claim: Claim) -> None:
    """A seed paper's headline claim with no per-seed data yet: inconclusive, no differences."""
    verdict = Verdict("inconclusive", UNTESTED, 0, math.nan, math.nan, math.nan)
    write_claim(claim_record(claim, [], verdict, [], {}), RESULTS)


if __name__ == "__main__":
    main()
