"""image.evaluate: linear evaluation of the frozen encoder, standard (SLF: a probe on clean features) and
adversarial (ALF: the probe finetuned on PGD examples), then PGD robust accuracy of encoder + probe
for each ε and each protocol, one Ray task per (protocol, ε); plus the representational divergence
(what RCS minimises) on held-out test images when the projection head is available.

Output: ``metrics.json`` (also DVC metrics; top-level accuracies are SLF's, ``alf_*`` ALF's),
``protocol.json`` (what the scores were measured with; :func:`measurement_protocol`),
``robustness.json`` / ``robustness.md`` (rows for the plot), ``robust_accuracy.png`` and
``probe.safetensors`` (+ ``probe_alf.safetensors``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import mlflow
import torch

from repflow.families.image.models import ProbedEncoder, build_encoder
from repflow.attacks import PGD, accuracy, robust_accuracy
from repflow.checkpoints import CheckpointError, load_tensors, save_tensors
from repflow.families.image.train_output import load_encoder
from repflow.families.image.train_methods import load_training_head
from repflow.families.image.coreset import representational_divergence
from repflow.cluster import choose_device, ensure_ray, ray_resources
from repflow.manifest import atomic_write_text
from repflow.families.image.probes import fit_adversarial_linear_probe
from repflow.probe import fit_linear_probe
from repflow.report import line_plot, markdown_table
from repflow.families.image.stages._splits import OrderedSplit, streams_splits
from repflow.shards import ShardSet
from repflow.stage import StageContext, StageSummary

log = logging.getLogger("repflow.evaluate")


def robust_accuracy_job(encoder_config: dict, state: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                        eps: float, steps: int, alpha: float, seed: int, batch_size: int, device: str,
                        compile: bool = False) -> dict:
    """One grid cell, runnable in a Ray worker: rebuild encoder + probe, attack ``x`` with PGD at ``eps``
    (through ``torch.compile`` with ``compile``: the same examples up to float rounding, faster per batch)."""
    if device == "cpu":
        torch.set_num_threads(1)  # one Ray CPU per task; torch would otherwise oversubscribe the cores
    encoder = build_encoder(encoder_config)
    probe = torch.nn.Linear(state["probe.weight"].shape[1], state["probe.weight"].shape[0])
    model = ProbedEncoder(encoder, probe)
    model.load_state_dict(state)
    model.to(device).eval()
    t0 = time.perf_counter()
    attack = PGD(model, eps=eps, alpha=alpha, steps=steps, seed=seed, compile=compile)
    acc = robust_accuracy(model, attack, x, y, batch_size=batch_size, device=device, desc=f"PGD eps={eps:.4f}")
    return {"eps": eps, "robust_acc": acc, "seconds": time.perf_counter() - t0}


def held_out_divergence(encoder, encoder_dir: Path, x: torch.Tensor, *, eps: float, steps: int, seed: int,
                        batch_size: int, device) -> float | None:
    """Mean representational divergence KL(p(x) ‖ p(x̃)) over ``x`` (float, [0, 1]) through the trained
    projection head; None when the train output has no head, or when its head is a pretext method's
    (masked_ae, bigan: no projection head, so no representation distribution to diverge)."""
    path = encoder_dir / "head.safetensors"
    if not path.is_file():
        return None
    state, cfg = load_tensors(path)
    if "pretext" in cfg:
        return None
    try:
        head = load_training_head(cfg, state, path)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    encoder.to(device).eval()
    head.to(device).eval()
    g = torch.Generator().manual_seed(seed)
    total = 0.0
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(device)
        rd = representational_divergence(encoder, head, xb, eps=eps, alpha=1.25 * eps / steps, steps=steps,
                                         generator=g, head_only=True)
        total += rd.item() * len(xb)
    return total / max(len(x), 1)


def measurement_protocol(cfg, x_att: torch.Tensor, y_att: torch.Tensor) -> dict:
    """What a score in ``metrics.json`` depends on besides the encoder: the probe, the attack (PGD ℓ∞,
    steps, step ratio, ε grid) and the exact attacked test images (count + sha256 of their float32 pixels
    and labels). Two scores are comparable only when their protocols are equal (the register stage's gate)."""
    digest = hashlib.sha256(x_att.contiguous().numpy().tobytes() + y_att.contiguous().numpy().tobytes())
    protocol = {"probe": {"epochs": cfg.probe_epochs, "lr": cfg.probe_lr, "batch_size": cfg.probe_batch_size},
                "attack": "pgd-linf", "steps": cfg.pgd_steps, "step_ratio": cfg.pgd_step_ratio,
                "eps": [round(e, 8) for e in cfg.eps], "test_images": len(x_att),
                "test_images_sha256": digest.hexdigest()[:16]}
    if cfg.alf:
        protocol["alf"] = {"epochs": cfg.alf_epochs, "eps": round(cfg.alf_eps, 8), "steps": cfg.alf_steps}
    return protocol


def probes_and_attacked_subset(params, data: ShardSet, encoder: torch.nn.Module, device: torch.device
                               ) -> tuple[dict[str, torch.nn.Linear], dict, torch.Tensor, torch.Tensor]:
    """The SLF probe (fitted on the training split's features) and, with ``evaluate.alf``, the ALF one; their
    clean accuracies (train / test / val); the attacked test subset: ``evaluate.max_test`` images drawn from
    ``seed``, float [0, 1] (n,C,H,W), and labels. Returns (probes, metrics, x_att, y_att).

    The splits are read in write order (:class:`OrderedSplit`): streamed unless ``train.stream`` is ``never``,
    so memory holds the features (N × out_dim) and the subset, not the images; either way the SLF probe, every
    accuracy and the subset are the same bit for bit. ALF draws shuffled batches: streamed, through a
    ``train.shuffle_buffer`` seeded from ``seed`` (another order than the loaded path's permutation, so ALF's
    scores differ as another seed's would; benchmarks/results/stream.md measures the same for training). Peak
    memory of the three ways: benchmarks/results/stream_evaluate.md."""
    cfg = params.evaluate
    stream = streams_splits(params)
    train, test = OrderedSplit(data, "train", stream=stream), OrderedSplit(data, "test", stream=stream)
    encoder.to(device)
    features, labels = train.features(encoder, device=device)
    probe = fit_linear_probe(features, labels, data.num_classes, epochs=cfg.probe_epochs, lr=cfg.probe_lr,
                             batch_size=cfg.probe_batch_size, seed=params.seed)
    del features
    model = ProbedEncoder(encoder.cpu(), probe).eval()
    metrics = {"clean_acc": test.accuracy(model), "train_acc": train.accuracy(model)}
    if data.count("val"):
        metrics["val_acc"] = OrderedSplit(data, "val", stream=stream).accuracy(model)
    x_att, y_att = test.subset(cfg.max_test, params.seed)

    probes = {"slf": probe}
    if cfg.alf:
        t0 = time.perf_counter()
        images, labels = train.training(shuffle_buffer=params.train.shuffle_buffer, seed=params.seed)
        probes["alf"] = fit_adversarial_linear_probe(encoder, probe, images, labels, epochs=cfg.alf_epochs,
                                                     lr=cfg.probe_lr, batch_size=cfg.probe_batch_size,
                                                     eps=cfg.alf_eps, steps=cfg.alf_steps, seed=params.seed,
                                                     device=device)
        encoder.cpu()
        metrics["alf_seconds"] = time.perf_counter() - t0
        metrics["alf_clean_acc"] = test.accuracy(ProbedEncoder(encoder, probes["alf"]).eval())
    return probes, metrics, x_att, y_att


def run(ctx: StageContext) -> StageSummary:
    params, tmp = ctx.params, ctx.tmp
    shards, encoder_dir = ctx.inputs["shards"], ctx.inputs["encoder"]
    cfg = params.evaluate
    data = ShardSet(shards)
    encoder, enc_config = load_encoder(encoder_dir)
    if enc_config.get("in_channels") != data.shape[0]:
        raise CheckpointError(f"{encoder_dir}: encoder takes {enc_config.get('in_channels')} channels, "
                              f"shards in {shards} have {data.shape[0]}")
    device = choose_device(params.device)
    ctx.meta["streamed"] = streams_splits(params)
    probes, metrics, x_att, y_att = probes_and_attacked_subset(params, data, encoder, device)
    model = ProbedEncoder(encoder, probes["slf"]).eval()
    n_att = len(x_att)

    ray = ensure_ray()
    x_ref, y_ref, cfg_ref = ray.put(x_att), ray.put(y_att), ray.put(enc_config)
    job = ray.remote(robust_accuracy_job).options(**ray_resources(device))
    t0 = time.perf_counter()
    futures = {}
    for name, p in probes.items():
        state = {k: v.detach().cpu() for k, v in ProbedEncoder(encoder, p).state_dict().items()}
        state_ref = ray.put(state)
        futures[name] = [job.remote(cfg_ref, state_ref, x_ref, y_ref, eps, cfg.pgd_steps,
                                    cfg.pgd_step_ratio * eps / cfg.pgd_steps, params.seed, cfg.attack_batch_size,
                                    device.type, cfg.compile) for eps in cfg.eps]
    results = {name: ray.get(f) for name, f in futures.items()}
    metrics["attack_seconds"] = time.perf_counter() - t0
    metrics["clean_acc_attacked_subset"] = accuracy(model, x_att, y_att)
    metrics["attacked_images"] = n_att
    for name, rows in results.items():
        prefix = "" if name == "slf" else f"{name}_"
        metrics[f"{prefix}robust_acc"] = {f"{r['eps']:.6f}": r["robust_acc"] for r in rows}
        metrics[f"{prefix}robust_acc_mean"] = sum(r["robust_acc"] for r in rows) / len(rows)
        metrics[f"{prefix}robust_acc_max_eps"] = rows[-1]["robust_acc"]
        for r in rows:
            mlflow.log_metric(f"{prefix}robust_acc", r["robust_acc"], step=int(round(r["eps"] * 255 * 100)))
    rd = held_out_divergence(encoder, encoder_dir, x_att, eps=max(cfg.eps), steps=cfg.rd_steps, seed=params.seed,
                             batch_size=cfg.attack_batch_size, device=device)
    encoder.cpu()
    if rd is not None:
        metrics["representational_divergence"] = rd

    for name, p in probes.items():
        save_tensors(tmp / ("probe.safetensors" if name == "slf" else f"probe_{name}.safetensors"), p.state_dict(),
                     {"in_dim": encoder.out_dim, "num_classes": data.num_classes, "protocol": name})
    atomic_write_text(tmp / "metrics.json", json.dumps(metrics, indent=1, sort_keys=True))
    atomic_write_text(tmp / "protocol.json", json.dumps(measurement_protocol(cfg, x_att, y_att), indent=1,
                                                        sort_keys=True))
    table = [{"protocol": name.upper(), "eps": r["eps"], "eps_255": r["eps"] * 255, "robust_acc": r["robust_acc"],
              "seconds": r["seconds"]} for name, rows in results.items() for r in rows]
    atomic_write_text(tmp / "robustness.json", json.dumps(table, indent=1))
    atomic_write_text(tmp / "robustness.md", markdown_table(table))
    clean_att = {"slf": metrics["clean_acc_attacked_subset"]}
    if "alf" in probes:
        clean_att["alf"] = accuracy(ProbedEncoder(encoder, probes["alf"]).eval(), x_att, y_att)
    line_plot([0.0] + [e * 255 for e in cfg.eps],
              {f"encoder + {name.upper()} probe": [clean_att[name]] + [r["robust_acc"] for r in rows]
               for name, rows in results.items()},
              tmp / "robust_accuracy.png", xlabel="ε (×1/255)", ylabel="accuracy",
              title=f"PGD-{cfg.pgd_steps} robust accuracy ({n_att} test images)")
    log.info("evaluate: clean %.4f, robust (mean over ε) %.4f", metrics["clean_acc"], metrics["robust_acc_mean"])
    alf = (f"; ALF (probe finetuned on PGD-{cfg.alf_steps} examples): clean {metrics['alf_clean_acc']:.4f}, robust "
           f"mean over ε {metrics['alf_robust_acc_mean']:.4f}" if "alf_clean_acc" in metrics else "")
    rd = (f"; representational divergence on held-out images {metrics['representational_divergence']:.4f}"
          if "representational_divergence" in metrics else "")
    md = (f"- linear probe (SLF) on the test split: clean accuracy **{metrics['clean_acc']:.4f}**; PGD-{cfg.pgd_steps} "
          f"robust accuracy, mean over ε: **{metrics['robust_acc_mean']:.4f}** ({n_att} test images){alf}{rd}\n\n"
          + markdown_table([{"ε (×1/255)": f"{float(e) * 255:.1f}", "robust accuracy": a}
                            for e, a in metrics["robust_acc"].items()]))
    return StageSummary(metrics=metrics, markdown=md, plots=["robust_accuracy.png", "robustness.md"])
