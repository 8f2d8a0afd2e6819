"""evaluate: linear probe on frozen features (clean accuracy), then PGD robust accuracy of
encoder + probe for each ε, one Ray task per ε.

Output: ``metrics.json`` (also DVC metrics), ``robustness.json`` (rows for the plot),
``robust_accuracy.png`` and ``probe.safetensors``.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import mlflow
import torch

from models import ProbedEncoder, build_encoder
from repflow import tracking
from repflow.attacks import PGD, accuracy, robust_accuracy
from repflow.checkpoints import CheckpointError, load_encoder, save_tensors
from repflow.cluster import choose_device, ensure_ray
from repflow.config import Params
from repflow.manifest import atomic_write_text, staged_output
from repflow.probe import embed, fit_linear_probe
from repflow.report import line_plot, markdown_table
from repflow.shards import ShardSet
from repflow.stage import Workspace, current_output, export_metrics, lineage, params_for, stage_key

log = logging.getLogger("repflow.evaluate")


def robust_accuracy_job(encoder_config: dict, state: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                        eps: float, steps: int, alpha: float, seed: int, batch_size: int, device: str) -> dict:
    """One grid cell, runnable in a Ray worker: rebuild encoder + probe, attack ``x`` with PGD at ``eps``."""
    if device == "cpu":
        torch.set_num_threads(1)  # one Ray CPU per task; torch would otherwise oversubscribe the cores
    encoder = build_encoder(encoder_config)
    probe = torch.nn.Linear(state["probe.weight"].shape[1], state["probe.weight"].shape[0])
    model = ProbedEncoder(encoder, probe)
    model.load_state_dict(state)
    model.to(device).eval()
    t0 = time.perf_counter()
    attack = PGD(model, eps=eps, alpha=alpha, steps=steps, seed=seed)
    acc = robust_accuracy(model, attack, x, y, batch_size=batch_size, device=device, desc=f"PGD eps={eps:.4f}")
    return {"eps": eps, "robust_acc": acc, "seconds": time.perf_counter() - t0}


def plan(params: Params, shards: Path, encoder_dir: Path) -> tuple[dict, str]:
    """(lineage, stage key): evaluate params, shard and encoder digests, code version."""
    lin = lineage("evaluate", params, {"shards": Path(shards), "encoder": Path(encoder_dir)})
    return lin, stage_key("evaluate", lin)


def run(params: Params, shards: Path, encoder_dir: Path, out: Path) -> Path:
    out, shards, encoder_dir = Path(out), Path(shards), Path(encoder_dir)
    lin, key = plan(params, shards, encoder_dir)
    if current_output(out, "evaluate", key):
        log.info("evaluate: %s is up to date (same params, inputs and code); reusing it", out)
        export_metrics(out, json.loads((out / "metrics.json").read_text()))
        return out
    cfg = params.evaluate
    data = ShardSet(shards)
    encoder, enc_config = load_encoder(encoder_dir)
    if enc_config.get("in_channels") != data.shape[0]:
        raise CheckpointError(f"{encoder_dir}: encoder takes {enc_config.get('in_channels')} channels, "
                              f"shards in {shards} have {data.shape[0]}")
    device = choose_device(params.device)
    encoder.to(device)
    x_tr, y_tr = data.load("train")
    x_te, y_te = data.load("test")
    with tracking.stage_run("evaluate", params_for("evaluate", params), lin), \
            staged_output(out, stage="evaluate", stage_key=key, lineage=lin) as tmp:
        probe = fit_linear_probe(embed(encoder, x_tr, device=device), y_tr, data.num_classes,
                                 epochs=cfg.probe_epochs, lr=cfg.probe_lr, batch_size=cfg.probe_batch_size,
                                 seed=params.seed)
        model = ProbedEncoder(encoder.cpu(), probe).eval()
        xf_te = x_te.float().div(255)
        metrics = {"clean_acc": accuracy(model, xf_te, y_te),
                   "train_acc": accuracy(model, x_tr.float().div(255), y_tr)}
        if data.count("val"):
            x_val, y_val = data.load("val")
            metrics["val_acc"] = accuracy(model, x_val.float().div(255), y_val)
        n_att = len(x_te) if cfg.max_test is None else min(cfg.max_test, len(x_te))
        g = torch.Generator().manual_seed(params.seed)
        pick = torch.randperm(len(x_te), generator=g)[:n_att].sort().values
        x_att, y_att = xf_te[pick], y_te[pick]

        ray = ensure_ray()
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        refs_in = [ray.put(v) for v in (enc_config, state, x_att, y_att)]
        job = ray.remote(robust_accuracy_job).options(num_cpus=1, num_gpus=1 if device.type == "cuda" else 0)
        t0 = time.perf_counter()
        futures = [job.remote(*refs_in, eps, cfg.pgd_steps, cfg.pgd_step_ratio * eps / cfg.pgd_steps,
                              params.seed, cfg.attack_batch_size, device.type) for eps in cfg.eps]
        rows = ray.get(futures)
        metrics["attack_seconds"] = time.perf_counter() - t0
        metrics["clean_acc_attacked_subset"] = accuracy(model, x_att, y_att)
        metrics["robust_acc"] = {f"{r['eps']:.6f}": r["robust_acc"] for r in rows}
        metrics["robust_acc_mean"] = sum(r["robust_acc"] for r in rows) / len(rows)
        metrics["robust_acc_max_eps"] = rows[-1]["robust_acc"]
        metrics["attacked_images"] = n_att

        for r in rows:
            mlflow.log_metric("robust_acc", r["robust_acc"], step=int(round(r["eps"] * 255 * 100)))
        mlflow.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        save_tensors(tmp / "probe.safetensors", probe.state_dict(), {"in_dim": encoder.out_dim,
                                                                       "num_classes": data.num_classes})
        atomic_write_text(tmp / "metrics.json", json.dumps(metrics, indent=1, sort_keys=True))
        table = [{"eps": r["eps"], "eps_255": r["eps"] * 255, "robust_acc": r["robust_acc"],
                  "seconds": r["seconds"]} for r in rows]
        atomic_write_text(tmp / "robustness.json", json.dumps(table, indent=1))
        atomic_write_text(tmp / "robustness.md", markdown_table(table))
        line_plot([0.0] + [r["eps"] * 255 for r in rows],
                  {"encoder + linear probe": [metrics["clean_acc_attacked_subset"]] + [r["robust_acc"] for r in rows]},
                  tmp / "robust_accuracy.png", xlabel="ε (×1/255)", ylabel="accuracy",
                  title=f"PGD-{cfg.pgd_steps} robust accuracy ({n_att} test images)")
        mlflow.log_artifact(str(tmp / "robust_accuracy.png"))
        mlflow.log_artifact(str(tmp / "metrics.json"))
    log.info("evaluate: clean %.4f, robust (mean over ε) %.4f", metrics["clean_acc"], metrics["robust_acc_mean"])
    export_metrics(out, metrics)
    return out


def run_in(ws: Workspace, params: Params) -> Path:
    return run(params, ws.out("prep"), ws.out("train"), ws.out("evaluate"))
