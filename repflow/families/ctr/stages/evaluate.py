"""ctr.evaluate: the trained click model on the validation and test impressions
(:mod:`repflow.families.ctr.metrics`): AUC, GAUC (per-user AUC weighted by impressions) and logloss on each,
test AUC per item-popularity bucket (the item's training impressions), and the mean attention weight per
modality (MAN / MARN). With ``ctr.evaluate.peer``, DeepCTR-Torch's DIN (:mod:`repflow.families.ctr.peer`) is
trained here on the same training examples and features and scored on the same impressions after its last
epoch, as ours is, and both go in one table."""
from __future__ import annotations

import importlib.util
import json
import logging

import numpy as np
import torch

from repflow.families.ctr.features import CtrTensors, examples_to_tensors
from repflow.families.ctr.metrics import auc_by_bucket, ctr_report, mean_attention
from repflow.families.ctr.models import MODALITIES
from repflow.families.ctr.peer import DEEPCTR_INSTALL, train_peer_din
from repflow.families.ctr.stages.prep import load_prepared
from repflow.families.ctr.stages.train import load_model
from repflow.families.ctr.training import predict_with_attention
from repflow.manifest import atomic_write_text, read_manifest
from repflow.report import bar_plot, markdown_table
from repflow.sources import SourceError
from repflow.stage import StageContext, StageSummary

log = logging.getLogger("repflow.ctr.evaluate")

_HEADLINE = ("auc", "gauc", "logloss")


def _joined(a: CtrTensors, b: CtrTensors) -> CtrTensors:
    return CtrTensors(*(torch.cat([getattr(a, k), getattr(b, k)]) for k in ("user", "item", "history",
                                                                             "history_len", "label")))


def _scores(labels: dict[str, CtrTensors], probs: dict[str, np.ndarray], prefix: str = "") -> dict[str, float]:
    metrics = {}
    for split, data in labels.items():
        report = ctr_report(data.label.numpy(), probs[split], data.user.numpy())
        head = f"{prefix}val_" if split == "val" else prefix
        metrics.update({f"{head}{k}": report[k] for k in _HEADLINE})
        if not prefix:
            metrics.update({f"{head}{k}": report[k] for k in ("impressions", "click_rate", "users_skipped")})
    return metrics


def run(ctx: StageContext) -> StageSummary:
    params, tmp = ctx.params, ctx.tmp
    cfg = params.ctr.evaluate
    if cfg.peer and importlib.util.find_spec("deepctr_torch") is None:
        raise SourceError(f"ctr.evaluate.peer: true needs deepctr-torch ({DEEPCTR_INSTALL}); or set it to false")
    space, examples, history = load_prepared(ctx.inputs["prep"])
    model, config = load_model(ctx.inputs["models"], ctx.inputs["prep"])
    features = space.tensors()
    data = {s: examples_to_tensors(examples, s, history) for s in ("val", "test")}
    probs, attention = {}, None
    for split, part in data.items():
        p, a = predict_with_attention(model, part)
        probs[split] = p.numpy().astype(np.float64)
        if split == "test":
            attention = a
    test = data["test"]
    metrics = _scores(data, probs)
    popularity = features.popularity[test.item].numpy()
    by_popularity = auc_by_bucket(test.label.numpy(), probs["test"], popularity)
    metrics.update({f"auc/popularity_{int(b['bucket'])}": b["auc"] for b in by_popularity})
    if attention is not None:
        metrics.update({f"attention/{m}": v for m, v in mean_attention(attention.numpy(), MODALITIES).items()})
    metrics["train_samples_per_s"] = config["history"][-1]["samples_per_s"]
    rows = [{"model": config["model"], **{k: metrics[k] for k in ("val_auc", "auc", "gauc", "logloss")},
             "train_samples_per_s": metrics["train_samples_per_s"]}]
    if cfg.peer:
        train = examples_to_tensors(examples, "train", history)
        t = params.ctr.train
        peer = train_peer_din(train, _joined(data["val"], test), features, epochs=cfg.peer_epochs or t.epochs,
                              batch_size=t.batch_size, lr=t.lr, seed=params.seed, dim=t.dim,
                              dnn_hidden_units=tuple(t.hidden))
        n_val = len(data["val"])
        metrics.update(_scores(data, {"val": peer.probs[:n_val], "test": peer.probs[n_val:]}, prefix="peer_"))
        metrics["peer_train_samples_per_s"] = peer.samples_per_s
        rows.append({"model": "deepctr_din (peer)",
                     **{k: metrics[f"peer_{k}"] for k in ("val_auc", "auc", "gauc", "logloss")},
                     "train_samples_per_s": peer.samples_per_s})
    log.info("ctr.evaluate: %s test AUC %.4f GAUC %.4f logloss %.4f (val AUC %.4f)%s", config["model"],
             metrics["auc"], metrics["gauc"], metrics["logloss"], metrics["val_auc"],
             f"; peer test AUC {metrics['peer_auc']:.4f}" if cfg.peer else "")
    atomic_write_text(tmp / "metrics.json", json.dumps(metrics, indent=1, sort_keys=True))
    protocol = {"test_impressions": len(test), "val_impressions": len(data["val"]), "history": history,
                "prep": read_manifest(ctx.inputs["prep"], verify=False)["digest"], "seed": params.seed}
    atomic_write_text(tmp / "protocol.json", json.dumps(protocol, indent=1, sort_keys=True))
    buckets = [str(int(b["bucket"])) for b in by_popularity]
    bar_plot(buckets, {config["model"]: [b["auc"] for b in by_popularity]}, tmp / "auc_by_popularity.png",
             ylabel="test AUC", title="test AUC by item popularity bucket (1 = not in train)")
    table = [{"popularity_bucket": int(b["bucket"]), "impressions": int(b["impressions"]),
              "click_rate": b["click_rate"], "auc": b["auc"]} for b in by_popularity]
    md = (f"- {len(data['val'])} validation and {len(test)} test impressions (later than every training one); GAUC "
          f"skips {metrics['users_skipped']:.0f} test users with one class; both models scored after their last "
          "epoch\n\n" + markdown_table(rows, floatfmt="{:.4f}") + "\n\n" + markdown_table(table, floatfmt="{:.3f}")
          + (("\n\n- mean attention per modality on test items: "
              + ", ".join(f"{m} {metrics[f'attention/{m}']:.3f}" for m in MODALITIES)) if attention is not None
             else "")
          + f"\n\n![AUC by popularity]({(ctx.out / 'auc_by_popularity.png').resolve().as_uri()})")
    return StageSummary(metrics=metrics, markdown=md, plots=["auc_by_popularity.png"])
