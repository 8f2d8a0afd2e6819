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

SEED_PAPERS = [  # every paper of the seed abstracts, with the headline claim used when no record tests it
    Claim("audio.advneg_untested", "audio", "Audio SSL with adversarial positional negatives (arXiv 2303.08561)",
          "Adversarial positional negatives improve audio representations on downstream tasks.",
          "downstream probe accuracy", "higher", 0.01, "accuracy", ("advneg",)),
    Claim("av.mdvae_untested", "av", "Sadok et al. 2024, A multimodal dynamical VAE for audiovisual speech "
          "representation learning", "MDVAE's static latent beats unimodal baselines at few-label emotion "
          "recognition.", "emotion accuracy", "higher", 0.02, "accuracy", ("mdvae",)),
    Claim("image.svd_fusion_untested", "image", "Weng et al. 2023, 'Boosting Adversarial Transferability via "
          "Fusing Logits of Top-1 Decomposed Feature' (arXiv 2305.01361)", "Fusing the rank-1 logits raises "
          "black-box transfer success.", "black-box transfer success", "higher", 0.01, "success rate",
          ("svd_fusion",)),
    Claim("image.rcs_untested", "image", "Xu et al. 2023, 'Efficient Adversarial Contrastive Learning via "
          "Robustness-Aware Coreset Selection' (NeurIPS)", "RCS speeds ACL up without hurting robustness.",
          "robust accuracy", "higher", 0.01, "accuracy", ("rcs",)),
    Claim("video.itov_untested", "video", "Ye et al. 2023, ItoV: efficiently adapting deep image watermarking to "
          "video (arXiv 2305.02781)", "ItoV adapts image watermarking to video robustly and efficiently.",
          "robust bit accuracy", "higher", 0.01, "bit accuracy", ("itov",)),
    Claim("image.glad_untested", "image", "Cazenavette et al. 2023, 'Generalizing Dataset Distillation via Deep "
          "Generative Prior' (CVPR)", "Distilling into a generator's latent space improves cross-architecture "
          "generalisation.", "cross-architecture accuracy", "higher", 0.01, "accuracy", ("feature",)),
    Claim("sr.shsr_untested", "sr", "Zhou et al. 2023, SHSR: sequential hierarchical learning for super-resolution "
          "(ACM TOMM)", "SHSR beats state-of-the-art SR networks with fewer parameters and MACs.", "Y-PSNR",
          "higher", 0.1, "dB", ("shsr",)),
    Claim("image.genrep_untested", "image", "Jahanian et al. 2022, 'Generative Models as a Data Source for "
          "Multiview Representation Learning' (ICLR)", "Latent-space views from a generator make contrastive "
          "representations that rival those learned from real data.", "linear-probe accuracy", "higher", 0.005,
          "accuracy", ("genrep",)),
    Claim("image.survey_untested", "image", "Liu et al. 2021, 'Self-supervised Learning: Generative or "
          "Contrastive' (TKDE)", "Contrastive methods lead linear-probe accuracy.", "linear-probe accuracy",
          "higher", 0.01, "accuracy", ("simclr",)),
    Claim("text.ami_untested", "text", "Pan et al. 2020, Adversarial Mutual Information for Text Generation (ICML)",
          "AMI outperforms MLE and MMI baselines in text generation.", "BLEU", "higher", 0.5, "BLEU", ("ami",)),
    Claim("ctr.marn_untested", "ctr", "Li et al. 2020, MARN (WWW)", "MARN beats modality concatenation and "
          "attention in CTR prediction.", "test AUC", "higher", 0.002, "AUC", ("marn",)),
]


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
    seed_papers = {c.paper for c in SEED_PAPERS}
    for paper in sorted(papers - seed_papers):
        print(f"(not a seed paper, recorded anyway: {paper})")
    for claim in SEED_PAPERS:
        if claim.paper not in papers:
            write_untested(claim)
            print(f"{claim.id}: {UNTESTED}")


def write_untested(claim: Claim) -> None:
    """A seed paper's headline claim with no per-seed data yet: inconclusive, no differences."""
    verdict = Verdict("inconclusive", UNTESTED, 0, math.nan, math.nan, math.nan)
    write_claim(claim_record(claim, [], verdict, [], {}), RESULTS)


if __name__ == "__main__":
    main()
