"""text.train: the forward model P(T|S) by MLE; for ``mmi`` and ``ami`` the backward model Q(S|T) by MLE on the
swapped pairs; for ``ami`` then AMI's fine-tuning of both with the latent-noise model
(:func:`~repflow.families.text.ami.train_ami`). Each phase seeds its own batch order and weights from
``seed``.

Resumable per phase: after each phase the models trained so far go to ``.train.progress/models.safetensors``
beside the output; a killed run started again with the same params, inputs and code skips the finished
phases (a phase cut short starts over, and since it is seeded it ends as an uninterrupted run does).
"""
from __future__ import annotations

import json
import logging

import mlflow
import torch

from repflow.checkpoints import TrainingProgress, load_state_strict, load_tensors, save_tensors
from repflow.families.text.ami import AMIConfig, swap, train_ami, train_mle
from repflow.families.text.generation import TEXT_METHODS
from repflow.families.text.models import LatentNoise, Seq2Seq, build_seq2seq, pad_batch, sequence_log_prob
from repflow.families.text.stages.prep import load_prepared, token_pairs
from repflow.manifest import atomic_write_text, read_manifest
from repflow.report import line_plot
from repflow.stage import StageContext, StageSummary

log = logging.getLogger("repflow.text.train")

BACKWARD_SEED, NOISE_SEED, AMI_SEED = 100, 200, 300
"""Offsets from ``seed`` of the backward model's, the noise model's and AMI's draws (the forward model uses
``seed`` itself), so the arms of benchmarks/ami start from the same models as this stage."""


def model_config(params, vocab_size: int) -> dict:
    t = params.text.train
    return {"model": t.model, "vocab_size": vocab_size, "embed": t.embed, "hidden": t.hidden, "layers": t.layers,
            "dropout": t.dropout}


def build_from_config(config: dict, seed: int | None = None) -> Seq2Seq:
    """The network a checkpoint config describes; seeded first when ``seed`` is given."""
    if seed is not None:
        torch.manual_seed(seed)
    kw = {k: config[k] for k in ("embed", "hidden", "layers", "dropout")}
    return build_seq2seq(config["model"], config["vocab_size"], **kw)


def load_models(folder) -> tuple[Seq2Seq, Seq2Seq | None, dict]:
    """(forward model, backward model or None, forward config with ``method``) of a text.train output
    (verified when it has a manifest), in eval mode."""
    if (folder / "manifest.json").is_file():
        read_manifest(folder, stage="text.train")
    models = []
    for role in ("forward", "backward"):
        path = folder / f"{role}.safetensors"
        if role == "backward" and not path.is_file():
            models.append(None)
            continue
        state, config = load_tensors(path)
        model = build_from_config(config)
        load_state_strict(model, state, path)
        models.append(model.eval())
    return models[0], models[1], config


@torch.no_grad()
def mean_token_nll(model: Seq2Seq, pairs: list[tuple[list[int], list[int]]], batch_size: int = 256) -> float:
    """Teacher-forced NLL per target token (<eos> included) of ``pairs``, nats."""
    model.eval()
    total, tokens = 0.0, 0
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i:i + batch_size]
        total -= sequence_log_prob(model, pad_batch([s for s, _ in chunk]), pad_batch([t for _, t in chunk])).sum()
        tokens += sum(len(t) + 1 for _, t in chunk)
    return float(total) / tokens


def _window_mean(values: list[float], n: int = 10) -> list[float]:
    return [sum(values[max(0, i - n + 1):i + 1]) / len(values[max(0, i - n + 1):i + 1]) for i in range(len(values))]


def run(ctx: StageContext) -> StageSummary:
    params, tmp = ctx.params, ctx.tmp
    cfg = params.text.train
    method = TEXT_METHODS[cfg.method]
    shards, tokenizer = load_prepared(ctx.inputs["prep"])
    max_len = read_manifest(ctx.inputs["prep"], verify=False)["meta"]["max_len"]
    train, valid = token_pairs(shards, "train"), token_pairs(shards, "valid")
    config = model_config(params, tokenizer.vocab_size)
    seed = params.seed
    models = {"forward": build_from_config(config, seed)}
    if method.backward:
        models["backward"] = build_from_config(config, seed + BACKWARD_SEED)
    if cfg.method == "ami":
        torch.manual_seed(seed + NOISE_SEED)
        models["noise"] = LatentNoise(cfg.hidden)
    progress = TrainingProgress(ctx.progress_dir / "models.safetensors", ctx.key, models,
                                fresh={"done": [], "history": {}, "val_nll": {}})
    done, history, val_nll = (progress.meta[k] for k in ("done", "history", "val_nll"))
    if progress.resumed:
        log.info("text.train: resuming after phase(s) %s", done)
    mlflow.set_tag("repflow.resumed_after", ",".join(done) or "-")

    def start(offset: int) -> int:
        """Seed the global generator (dropout) per phase, so a resumed phase draws what it draws unbroken."""
        torch.manual_seed(seed + offset)
        return seed + offset

    def finish(phase: str, record) -> None:
        done.append(phase)
        history[phase] = record
        if phase != "backward_mle":
            val_nll[phase] = mean_token_nll(models["forward"], valid)
        progress.save()

    mle = {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr, "max_len": max_len}
    if "forward_mle" not in done:
        finish("forward_mle", train_mle(models["forward"], train, seed=start(0), desc="forward MLE", **mle))
    if method.backward and "backward_mle" not in done:
        finish("backward_mle", train_mle(models["backward"], swap(train), seed=start(BACKWARD_SEED),
                                         desc="backward MLE", **mle))
    if cfg.method == "ami" and "ami" not in done:
        ami = AMIConfig(samples=cfg.samples, noise_scale=cfg.noise_scale, adversarial_weight=cfg.adversarial_weight,
                        lr=cfg.ami_lr, max_len=max_len, backward_adversarial=cfg.backward_adversarial,
                        noise_step=cfg.noise_step)
        finish("ami", train_ami(models["forward"], models["backward"], models["noise"], train, steps=cfg.ami_steps,
                                batch_size=cfg.ami_batch_size, config=ami, seed=start(AMI_SEED), max_len=max_len))
    n_params = sum(p.numel() for p in models["forward"].parameters())
    for role in ("forward", "backward"):
        if role in models:
            save_tensors(tmp / f"{role}.safetensors", models[role].state_dict(),
                         {**config, "role": role, "method": cfg.method, "max_len": max_len})
    atomic_write_text(tmp / "history.json", json.dumps(history, indent=1))
    metrics = {"params": n_params, "forward_final_loss": history["forward_mle"][-1]["loss"],
               "val_nll_forward_mle": val_nll["forward_mle"]}
    plots = ["mle_loss.png"]
    curves = {f"{p.split('_')[0]} (train)": [h["loss"] for h in history[p]] for p in ("forward_mle", "backward_mle")
              if p in history}
    line_plot(list(range(1, cfg.epochs + 1)), curves, tmp / "mle_loss.png", xlabel="epoch",
              ylabel="NLL per token (nats)", title="text.train MLE")
    md = (f"- **{cfg.method}** ({method.summary}); {cfg.model} ({n_params:,} parameters per model), vocabulary "
          f"{tokenizer.vocab_size}; {len(train)} training pairs × {cfg.epochs} MLE epochs; validation NLL per "
          f"token after MLE {val_nll['forward_mle']:.3f}")
    if cfg.method == "ami":
        trace = history["ami"]
        rewards = [h["reward"] for h in trace if "reward" in h]
        norms = [h["noise_norm"] for h in trace if "noise_norm" in h]
        fakes = [h["fake_nll"] for h in trace if "fake_nll" in h]
        head, tail = rewards[:max(1, len(rewards) // 5)], rewards[-max(1, len(rewards) // 5):]
        metrics.update({"val_nll_forward_ami": val_nll["ami"], "ami_reward_first": sum(head) / len(head),
                        "ami_reward_last": sum(tail) / len(tail)})
        line_plot(list(range(1, len(rewards) + 1)), {"log Q(S|T̃), 10-batch mean": _window_mean(rewards)},
                  tmp / "ami_reward.png", xlabel="adversarial forward batch", ylabel="nats per source",
                  title="AMI: the backward model's reward of generated targets")
        plots.append("ami_reward.png")
        md += (f"\n- AMI: {cfg.ami_steps} batches of {cfg.ami_batch_size} (K = {cfg.samples}, λ = {cfg.noise_scale}); "
               f"reward log Q(S|T̃) {metrics['ami_reward_first']:.2f} → {metrics['ami_reward_last']:.2f} nats "
               f"(first / last fifth of the adversarial forward batches); fake NLL "
               f"{fakes[0] if fakes else float('nan'):.2f} → {fakes[-1] if fakes else float('nan'):.2f}; noise "
               f"norm {norms[0] if norms else float('nan'):.2f} → {norms[-1] if norms else float('nan'):.2f}; "
               f"validation NLL per token {val_nll['ami']:.3f}")
    ctx.meta.update({"method": cfg.method, "params": n_params, "train_pairs": len(train)})
    log.info("text.train: %s, forward loss %.3f, validation NLL %.3f", cfg.method, metrics["forward_final_loss"],
             val_nll.get("ami", val_nll["forward_mle"]))
    return StageSummary(metrics=metrics, markdown=md, plots=plots)
