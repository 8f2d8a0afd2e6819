"""MARN at CPU scale on MovieLens-100K: DIN on concatenated modalities vs MAN vs MARN vs single-discriminator
MARN vs DeepCTR-Torch's DIN (the peer), test AUC / GAUC / logloss over seeds, training samples/s, AUC per item
popularity bucket and the mean attention weight per modality.

Claim checked (Li et al., WWW 2020): MARN ≥ MAN > concatenation.

Same start for every arm: one split (global time cut 80 / 10 / 10, click = rating ≥ 4), one feature space
fitted on the training part, histories of the 20 latest earlier clicks; the same epochs, batch size, learning
rate and embedding size; each arm's weights and batch order come from the seed. Every arm is scored on test at
the epoch with the best validation AUC (the peer too: one DeepCTR ``fit`` per epoch).

    python -m benchmarks.marn [--seeds 3] [--epochs 3] [--jobs 2] [--threads 1]
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

os.environ.setdefault("REPFLOW_PROGRESS", "0")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks._common import Tested, interval_text, mean_std, write_claims, write_results  # noqa: E402
from repflow.families.ctr.features import (  # noqa: E402
    build_examples, build_feature_space, examples_to_tensors, time_split)
from repflow.families.ctr.metrics import auc, auc_by_bucket, ctr_report, mean_attention  # noqa: E402
from repflow.families.ctr.models import CTR_MODELS, MODALITIES, build_ctr_model  # noqa: E402
from repflow.families.ctr.tables import read_movielens  # noqa: E402
from repflow.families.ctr.training import predict_with_attention, train_ctr  # noqa: E402

from repflow.verdict import Claim  # noqa: E402

PEER = "deepctr_din"
ARMS = (*CTR_MODELS, PEER)

PAPER = CTR_MODELS["marn"].paper
# declared before the run: (method, reference) → the claim; test AUC at the best validation epoch, paired by seed
CLAIMS = {
    ("marn", "din_concat"): Claim("ctr.marn_vs_concat", "ctr", PAPER, "MARN's multimodal item representation beats "
                                  "concatenating the modalities in test AUC.", "test AUC", "higher", 0.002, "AUC",
                                  ("marn",)),
    ("marn", "man"): Claim("ctr.marn_vs_man", "ctr", PAPER, "MARN's adversarial modality-invariant part adds test AUC "
                           "over modality attention alone (MAN).", "test AUC", "higher", 0.002, "AUC", ("marn",)),
}


def judged(payload: dict) -> list[Tested]:
    """The declared claims from a run's payload (``per_seed`` rows and ``args``, as marn.json stores them)."""
    by = {(r["arm"], r["seed"]): r for r in payload["per_seed"]}
    seeds = sorted({r["seed"] for r in payload["per_seed"]})
    a = payload["args"]
    scale = {"data": "MovieLens-100K, time split 80/10/10", "model": f"embedding {a['dim']}, MLP {a['hidden']}",
             "steps": f"{a['epochs']} epochs, batch {a['batch_size']}", "device": "cpu"}
    return [Tested(claim, [by[m, s]["auc"] - by[r, s]["auc"] for s in seeds], scale=scale,
                   per_seed={m: [by[m, s]["auc"] for s in seeds], r: [by[r, s]["auc"] for s in seeds]})
            for (m, r), claim in CLAIMS.items()]


def prepare(history_len: int):
    tables = read_movielens()
    split, cuts = time_split(tables.interactions)
    space = build_feature_space(split, tables.items)
    examples = build_examples(split, space, history_len)
    data = {s: examples_to_tensors(examples, s, history_len) for s in ("train", "val", "test")}
    return space, data, cuts


def run_arm(job: tuple[str, int, dict]) -> dict:
    """Train one arm for one seed; test metrics at the best validation epoch."""
    arm, seed, a = job
    torch.set_num_threads(a["threads"])
    space, data, _ = prepare(a["history"])
    features = space.tensors()
    train, val, test = data["train"], data["val"], data["test"]
    popularity = features.popularity[test.item].numpy()
    if arm == PEER:
        from repflow.families.ctr.peer import train_peer_din

        result = train_peer_din(train, test, features, epochs=a["epochs"], batch_size=a["batch_size"], lr=a["lr"],
                                seed=seed, dim=a["dim"], dnn_hidden_units=a["hidden"], validate=val)
        probs, attention, speed = result.probs, None, result.samples_per_s
        best_epoch, val_auc, params = result.history["best_epoch"], max(result.history["val_auc"]), None
    else:
        torch.manual_seed(seed)
        model = build_ctr_model(arm, features, dim=a["dim"], hidden=a["hidden"])
        params = sum(p.numel() for p in model.parameters())
        best = {"val_auc": -1.0}

        def on_epoch(epoch: int, stats: dict, _opt) -> None:
            val_auc = auc(val.label.numpy(), predict_with_attention(model, val)[0].numpy())
            if val_auc > best["val_auc"]:
                probs, attention = predict_with_attention(model, test)
                best.update(val_auc=val_auc, epoch=epoch, probs=probs.numpy().astype(np.float64),
                            attention=None if attention is None else attention.numpy())
            model.train()

        history = train_ctr(model, train, epochs=a["epochs"], batch_size=a["batch_size"], lr=a["lr"], seed=seed,
                            adv_weight=a["adv_weight"], on_epoch=on_epoch)
        probs, attention = best["probs"], best["attention"]
        speed = len(train) * len(history) / sum(len(train) / h["samples_per_s"] for h in history)
        best_epoch, val_auc = best["epoch"], best["val_auc"]
    report = ctr_report(test.label.numpy(), probs, test.user.numpy())
    row = {"arm": arm, "seed": seed, **report, "val_auc": val_auc, "best_epoch": best_epoch,
           "samples_per_s": speed, "params": params,
           "auc_by_popularity": auc_by_bucket(test.label.numpy(), probs, popularity),
           "attention": None if attention is None else mean_attention(attention, MODALITIES)}
    print(f"[{arm} seed {seed}] AUC {report['auc']:.4f} GAUC {report['gauc']:.4f} logloss {report['logloss']:.4f} "
          f"(best epoch {best_epoch}, val AUC {val_auc:.4f}), {speed:.0f} samples/s", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--hidden", type=int, nargs="+", default=[64, 32])
    ap.add_argument("--history", type=int, default=20)
    ap.add_argument("--adv-weight", type=float, default=1.0, help="ctr.train.adversarial_weight (1.0 by default)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    a = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "dim": args.dim,
         "hidden": tuple(args.hidden), "history": args.history, "adv_weight": args.adv_weight, "threads": args.threads}
    space, data, cuts = prepare(args.history)
    jobs = [(arm, seed, a) for seed in range(args.seeds) for arm in ARMS]
    # spawn, not fork: polars' thread pool, started by prepare() here, deadlocks in a forked child
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(run_arm, jobs))
    by = {(r["arm"], r["seed"]): r for r in results}
    seeds = list(range(args.seeds))

    def stat(arm: str, key: str, digits: int = 4) -> str:
        m, s = mean_std([by[arm, seed][key] for seed in seeds])
        return f"{m:.{digits}f} ± {s:.{digits}f}"

    rows = []
    for arm in ARMS:
        rows.append({"model": arm, "test AUC": stat(arm, "auc"), "test GAUC": stat(arm, "gauc"),
                     "test logloss": stat(arm, "logloss"), "val AUC": stat(arm, "val_auc"),
                     "best epoch": "/".join(str(by[arm, s]["best_epoch"]) for s in seeds),
                     "train samples/s": round(mean_std([by[arm, s]["samples_per_s"] for s in seeds])[0]),
                     "params": by[arm, 0]["params"] if by[arm, 0]["params"] is not None else "-"})

    def paired(a1: str, a2: str, key: str = "auc") -> list[float]:
        return [by[a1, s][key] - by[a2, s][key] for s in seeds]

    def says(a1: str, a2: str) -> str:
        parts = []
        for key in ("auc", "gauc"):
            d = paired(a1, a2, key)
            m, sd = mean_std(d)
            parts.append(f"{key.upper()} {m:+.4f} ± {sd:.4f} ({interval_text(d)})")
        return f"{a1} − {a2}: " + ", ".join(parts)

    n = {s: len(t) for s, t in data.items()}
    notes = [f"Protocol: MovieLens-100K from the recbole 1.2.1 wheel, click = rating ≥ 4; global time cut (train < "
             f"{cuts['val_from']} ≤ val < {cuts['test_from']} ≤ test, epoch seconds): {n['train']} / {n['val']} / "
             f"{n['test']} impressions; histories = the {args.history} latest clicks strictly earlier; item "
             f"modalities {list(MODALITIES)} (title words and statistics fitted on train only); embedding "
             f"{args.dim} per modality, MLP {list(args.hidden)}, Adam {args.lr}, batch {args.batch_size}, up to "
             f"{args.epochs} epochs, test scored at the best validation-AUC epoch; MARN adversarial weight "
             f"{args.adv_weight}, gradient reversal ramped 0 → 1; seeds {seeds}. GAUC: per-user AUC weighted by "
             "impressions, users with one class skipped.",
             f"Peer: DeepCTR-Torch {_deepctr_version()} DIN on the same split and features except the title text "
             "(user, item ID, year, popularity and click-rate buckets, first genre, all genres of the target; the "
             "history as ID / year / bucket / first-genre sequences), its own Dice attention and init, our "
             "embedding size and MLP widths.",
             "Claim MARN ≥ MAN > concatenation: " + "; ".join([says("marn", "man"), says("man", "din_concat"),
                                                               says("marn", "marn_single_disc"),
                                                               says("marn", PEER)]) + ".",
             f"Training speed, samples/s on {args.threads} thread(s) per process with {args.jobs} processes sharing "
             "the machine (same run): " + ", ".join(f"{arm} {rows[i]['train samples/s']}"
                                                     for i, arm in enumerate(ARMS)) + "."]
    for arm in ARMS:
        if by[arm, 0]["attention"]:
            mean = {m: mean_std([by[arm, s]["attention"][m] for s in seeds])[0] for m in MODALITIES}
            notes.append(f"{arm} mean attention per modality on test items: "
                         + ", ".join(f"{m} {v:.3f}" for m, v in mean.items()) + ".")
    buckets = [b["bucket"] for b in by[ARMS[0], 0]["auc_by_popularity"]]
    for arm in ARMS:
        per = {b: mean_std([next(x["auc"] for x in by[arm, s]["auc_by_popularity"] if x["bucket"] == b)
                            for s in seeds])[0] for b in buckets}
        notes.append(f"{arm} test AUC by item popularity bucket (1 = not in train, k ≥ 2 = 2^(k−2) … "
                     "2^(k−1)−1 training impressions): " + ", ".join(f"{b}: {v:.3f}" for b, v in per.items()) + ".")
    counts = {b["bucket"]: b["impressions"] for b in by[ARMS[0], 0]["auc_by_popularity"]}
    notes.append(f"Test impressions per popularity bucket: {counts}.")
    notes.append(f"Wall time {time.time() - started:.0f} s, {args.jobs} processes × {args.threads} torch thread(s).")
    notes += write_claims(judged({"per_seed": results, "args": vars(args)}), "marn")
    write_results("marn", "MARN vs MAN vs DIN-concat vs DeepCTR-Torch DIN on MovieLens-100K (CPU scale)", rows,
                  notes, extra={"per_seed": results, "args": vars(args)})


def _deepctr_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("deepctr-torch")
    except PackageNotFoundError:
        return "(not installed)"


if __name__ == "__main__":
    main()
