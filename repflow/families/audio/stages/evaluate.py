"""audio.evaluate: linear probes per label task, the position-sensitivity score, and PGD on waveforms.

Every clip is read with the encoder's own log-mel settings and normalisation statistics (from its
checkpoint). ``probes.safetensors`` holds probes on raw embeddings (what ``repflow embed-audio`` applies).
The robust accuracy is the attacked task's probe on adversarial *waveforms*: PGD-ℓ∞ of
:mod:`repflow.attacks` through log-mel, normalisation, encoder and probe.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from repflow.attacks import PGD, accuracy, robust_accuracy
from repflow.checkpoints import CheckpointError, load_state_strict, load_tensors, save_tensors
from repflow.families.audio.advneg import position_sensitivity
from repflow.families.audio.data import load_audio_split
from repflow.families.audio.evaluation import fit_probes
from repflow.families.audio.features import LogMel, MelSettings
from repflow.families.audio.models import AudioEmbedder, AudioNTT, WaveformClassifier
from repflow.families.audio.params import POSITION_SENSITIVE
from repflow.families.audio.sources import attack_task
from repflow.families.audio.ssl import embed_clips
from repflow.manifest import OutputError, atomic_write_text, read_manifest
from repflow.report import bar_plot, markdown_table
from repflow.stage import StageContext, StageSummary

log = logging.getLogger("repflow.audio.evaluate")


def load_audio_encoder(folder: Path, *, verify: bool = True) -> tuple[AudioNTT, dict]:
    """The encoder of a verified ``audio.train`` output, in eval mode, and its checkpoint config (``verify``
    False: a registered version's checkpoint folder, which has no manifest and was verified by its reader)."""
    if verify:
        read_manifest(folder, stage="audio.train")
    state, config = load_tensors(Path(folder) / "encoder.safetensors")
    try:
        encoder = AudioNTT(**{k: v for k, v in config["encoder"].items() if k != "arch"})
        MelSettings.from_dict(config["features"])
        float(config["norm"]["mean"]), float(config["norm"]["std"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{Path(folder) / 'encoder.json'}: not an audio encoder config ({exc})") from None
    load_state_strict(encoder, state, Path(folder) / "encoder.safetensors")
    return encoder.eval(), config


def load_audio_embedder(folder: Path, *, verify: bool = True) -> tuple[AudioEmbedder, dict]:
    """Waveform → embedding (:class:`AudioEmbedder`: log-mel, the training data's normalisation, the encoder of
    :func:`load_audio_encoder`) in eval mode, and the encoder's checkpoint config."""
    encoder, config = load_audio_encoder(folder, verify=verify)
    logmel = LogMel(MelSettings.from_dict(config["features"]))
    return AudioEmbedder(logmel, config["norm"]["mean"], config["norm"]["std"], encoder).eval(), config


def probe_tasks(params, manifest_tasks: dict) -> list[str]:
    return list(params.audio.evaluate.tasks or manifest_tasks)


def check(params, inputs: dict[str, Path]) -> None:
    """The probe tasks must be labels the prepared shards carry (before any embedding or probe)."""
    manifest = read_manifest(inputs["shards"], verify=False)
    have = manifest.get("meta", {}).get("tasks", {})
    missing = [t for t in probe_tasks(params, have) if t not in have]
    if missing:
        raise OutputError(f"audio.evaluate.tasks asks for {missing}, but {Path(inputs['shards']) / 'manifest.json'} "
                          f"has labels {sorted(have)} only")


def run(ctx: StageContext) -> StageSummary:
    params, tmp = ctx.params, ctx.tmp
    cfg = params.audio.evaluate
    encoder, enc_config = load_audio_encoder(ctx.inputs["encoder"])
    settings, stats = MelSettings.from_dict(enc_config["features"]), enc_config["norm"]
    shards = ctx.inputs["shards"]
    tasks = probe_tasks(params, read_manifest(shards, verify=False)["meta"]["tasks"])
    train = load_audio_split(shards, "train", settings=settings, stats=stats, tasks=tasks)
    test = load_audio_split(shards, "test", settings=settings, stats=stats, tasks=tasks)
    f_train, f_test = embed_clips(encoder, train.logmel), embed_clips(encoder, test.logmel)
    fitted = fit_probes(f_train, {t: train.labels[t] for t in tasks}, f_test, {t: test.labels[t] for t in tasks},
                        {t: len(train.classes[t]) for t in tasks}, epochs=cfg.probe_epochs, lr=cfg.probe_lr,
                        batch_size=cfg.probe_batch_size, seed=params.seed)
    rows, tensors = [], {}
    for task, result in fitted.items():
        sensitive = POSITION_SENSITIVE.get(task)
        rows.append({"task": task, "classes": len(train.classes[task]), "position_sensitive":
                     "unknown" if sensitive is None else ("yes" if sensitive else "no"),
                     "probe_acc": result.accuracy, "majority": result.majority})
        tensors[f"{task}/weight"], tensors[f"{task}/bias"] = result.probe.weight, result.probe.bias
        log.info("audio.evaluate: probe %s %.4f (majority class %.4f)", task, result.accuracy, result.majority)
    save_tensors(tmp / "probes.safetensors", tensors,
                 {"tasks": {t: train.classes[t] for t in tasks}, "dim": encoder.out_dim})

    sensitivity, relative = position_sensitivity(encoder, test.logmel, cfg.sensitivity_shifts)
    metrics = {f"probe_acc/{r['task']}": r["probe_acc"] for r in rows}
    metrics["probe_acc_mean"] = sum(r["probe_acc"] for r in rows) / len(rows)
    metrics["position_sensitivity"] = sensitivity
    metrics["position_sensitivity_relative"] = relative

    robust_rows = []
    attacked = attack_task(params)
    if attacked:
        n = min(cfg.max_test, len(test.waveforms))
        model = WaveformClassifier(LogMel(settings), stats["mean"], stats["std"], encoder,
                                   fitted[attacked].probe)
        model.eval()
        u = ((test.waveforms[:n] + 1) / 2).clamp(0, 1).unsqueeze(1)
        y = test.labels[attacked][:n]
        clean = accuracy(model, u, y, batch_size=cfg.attack_batch_size)
        robust_rows.append({"eps (waveform)": 0.0, "accuracy": clean})
        metrics["clean_acc"] = clean
        for eps in cfg.eps:
            attack = PGD(model, eps=eps / 2, steps=cfg.pgd_steps, alpha=2.5 * eps / 2 / cfg.pgd_steps,
                         random_start=True, seed=params.seed)
            acc = robust_accuracy(model, attack, u, y, batch_size=cfg.attack_batch_size, desc=f"PGD eps {eps:g}")
            metrics[f"robust_acc/{eps:g}"] = acc
            robust_rows.append({"eps (waveform)": eps, "accuracy": acc})
        metrics["robust_acc_mean"] = sum(r["accuracy"] for r in robust_rows[1:]) / len(cfg.eps)
    atomic_write_text(tmp / "metrics.json", json.dumps(metrics, indent=1, sort_keys=True))
    protocol = {"tasks": tasks, "probe_epochs": cfg.probe_epochs, "probe_lr": cfg.probe_lr,
                "test_clips": len(test.logmel), "shards": read_manifest(shards, verify=False)["digest"],
                "attack": "pgd-linf" if attacked else None, "attack_task": attacked,
                "eps": cfg.eps, "steps": cfg.pgd_steps}
    atomic_write_text(tmp / "protocol.json", json.dumps(protocol, indent=1, sort_keys=True))
    bar_plot([r["task"] for r in rows], {"linear probe": [r["probe_acc"] for r in rows],
                                         "majority class": [r["majority"] for r in rows]},
             tmp / "probes.png", ylabel="test accuracy", title="linear probes on the frozen audio encoder")
    md = (f"- audio probes (test accuracy; mean {metrics['probe_acc_mean']:.4f}); position sensitivity "
          f"1 − cos(f(x), f(shift(x))) = {sensitivity:.4f} over shifts {cfg.sensitivity_shifts} mel bins "
          f"({relative:.3f} of the distance between two different clips)\n\n"
          + markdown_table(rows))
    if robust_rows:
        md += (f"\n\n- PGD-{cfg.pgd_steps} ℓ∞ on waveforms, `{attacked}` probe, {len(u)} test clips\n\n"
               + markdown_table(robust_rows))
    return StageSummary(metrics=metrics, markdown=md, plots=["probes.png"])
