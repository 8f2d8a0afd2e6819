"""image.zoo: train the transfer-attack model zoo on the prep shards, one Ray task per member, and register
each member in MLflow (``repflow-zoo-<name>``).

Members (repflow/families/image/zoo.py): the white-box surrogate (``zoo.surrogate``, by default a 3-block ConvNet with
batch norm and a global-average-pooled head) and black-box targets — the instance-norm ConvNet of
DC/DM (two seeds), an MLP, a wider ConvNet with batch norm, a ResNet-8 and a PGD-trained ConvNet as a
defence. The zoo depends only on the shards and the ``zoo`` params, so it is
its own stage: changing the encoder or the attack grid reuses it.

Output folder: ``<name>.safetensors`` (+ ``.json``: the classifier config, role and clean test
accuracy) per member, ``zoo.json`` and ``zoo.md`` (one row per member).
"""
from __future__ import annotations

import json
import logging
import time

import numpy as np
import torch

from repflow.families.image.models import build_classifier
from repflow import tracking
from repflow.attacks import accuracy
from repflow.checkpoints import save_tensors
from repflow.cluster import choose_device, ensure_ray, ray_resources
from repflow.manifest import atomic_write_text
from repflow.report import markdown_table
from repflow.shards import ShardSet
from repflow.stage import StageContext, StageSummary
from repflow.families.image.zoo import ZOO_SPECS, member_role, train_zoo_member

log = logging.getLogger("repflow.families.image.zoo")


def train_member_job(name: str, images: torch.Tensor, labels: torch.Tensor, num_classes: int, seed: int, epochs: int,
                     batch_size: int, device: str) -> dict:
    """One Ray task: train zoo member ``name``; returns its config, weights and training seconds."""
    if device == "cpu":
        torch.set_num_threads(1)
    t0 = time.perf_counter()
    model = train_zoo_member(ZOO_SPECS[name], images, labels, seed=seed, epochs=epochs, batch_size=batch_size,
                             num_classes=num_classes, device=device)
    return {"name": name, "config": model.config, "state": {k: v.cpu() for k, v in model.state_dict().items()},
            "seconds": time.perf_counter() - t0}


def run(ctx: StageContext) -> StageSummary:
    params, tmp, lin = ctx.params, ctx.tmp, ctx.lineage
    cfg = params.zoo
    data = ShardSet(ctx.inputs["shards"])
    x_tr, y_tr = data.load("train")
    x_te, y_te = data.load("test")
    device = choose_device(params.device)
    ray = ensure_ray()
    job = ray.remote(train_member_job).options(**ray_resources(device))
    refs = [ray.put(x_tr), ray.put(y_tr)]
    ctx.meta.update({"members": cfg.members, "surrogate": cfg.surrogate})
    futures = [job.remote(name, *refs, data.num_classes, params.seed, cfg.epochs, cfg.batch_size, device.type)
               for name in cfg.members]
    rows = []
    for trained in ray.get(futures):
        name = trained["name"]
        model = build_classifier(trained["config"])
        model.load_state_dict(trained["state"])
        model.eval()
        test_acc = accuracy(model, x_te.float().div(255), y_te)
        role = member_role(name, cfg.surrogate)
        save_tensors(tmp / f"{name}.safetensors", model.state_dict(),
                     {"classifier": trained["config"], "role": role, "test_acc": test_acc})
        row = {"member": name, "role": role, "arch": trained["config"]["arch"], "test_acc": test_acc,
               "train_seconds": trained["seconds"], "notes": ZOO_SPECS[name].notes}
        if cfg.register_models:
            example = np.random.default_rng(0).random((2, *data.shape), dtype=np.float32)
            row["registered"] = "repflow-zoo-" + name + "/" + tracking.register_model(
                model, f"repflow-zoo-{name}", example,
                {"repflow.role": role, "repflow.test_acc": test_acc, "repflow.code_version": lin["code_version"],
                 "repflow.input.shards": lin["inputs"]["shards"], "repflow.git_commit": tracking.git_commit()},
                (tmp / f"{name}.safetensors", tmp / f"{name}.json"))
        log.info("zoo: %s (%s) test accuracy %.4f, trained in %.1f s", name, role, test_acc, trained["seconds"])
        rows.append(row)
    atomic_write_text(tmp / "zoo.json", json.dumps(rows, indent=1))
    atomic_write_text(tmp / "zoo.md", markdown_table(rows))
    md = ("- zoo: " + ", ".join(f"{r['member']} ({r['role']}) {r['test_acc']:.3f}" for r in rows)
          + " test accuracy")
    return StageSummary(metrics={f"test_acc_{r['member']}": r["test_acc"] for r in rows}, markdown=md,
                        plots=["zoo.md"])
