"""audio.train: self-supervised encoder on the train split's normalised log-mel (``baseline`` or ``advneg``).

The checkpoint keeps what reading audio for this encoder needs: its log-mel settings and the normalisation
statistics of the data it was trained on, so every later use normalises the way training did.
``epochs: 0`` writes the randomly initialised encoder (the floor every method is compared with).
"""
from __future__ import annotations

import logging

import mlflow
import torch

from repflow.checkpoints import save_tensors
from repflow.families.audio.advneg import hardest_negatives, positional_candidates
from repflow.families.audio.data import load_audio_split
from repflow.families.audio.models import AudioNTT, projection_head
from repflow.families.audio.pictures import logmel_rows
from repflow.families.audio.ssl import AUDIO_METHODS, method_views, train_audio_ssl
from repflow.report import line_plot
from repflow.stage import StageContext, StageSummary

log = logging.getLogger("repflow.audio.train")


def build_encoder(params) -> AudioNTT:
    """The encoder ``audio.train.encoder`` describes, initialised from the seed (every method starts here)."""
    enc = params.audio.train.encoder
    torch.manual_seed(params.seed)
    return AudioNTT(n_mels=params.audio.features.n_mels, channels=enc.channels, blocks=enc.blocks, dim=enc.dim,
                    freq_pool=enc.freq_pool)


def _views_figure(encoder, head, x: torch.Tensor, params, path) -> None:
    """Anchor, one BYOL-A positive, and the positional negative the trained model is most blind to (highest
    cosine similarity of projections, as advneg chooses)."""
    cfg = params.audio.train
    g = torch.Generator().manual_seed(params.seed)
    positive, _ = method_views(x, g, cfg.augment.model_dump())
    neg = cfg.negatives
    cands, names, valid = positional_candidates(x, g, shifts=neg.shifts, reorders=neg.reorders, blocks=neg.blocks,
                                                sound_threshold=neg.sound_threshold)
    encoder.eval(), head.eval()
    hardest, idx, sim = hardest_negatives(lambda v: head(encoder(v)), x, cands, 1, valid)
    rows = [(f"clip {i}", [("anchor", x[i]), ("positive (BYOL-A view)", positive[i]),
                           (f"negative: {names[int(idx[i, 0])]}\ncos {float(sim[i, idx[i, 0]]):.2f}", hardest[i, 0])])
            for i in range(len(x))]
    logmel_rows(rows, path, title="anchor, positive and the hardest positional negative")


def run(ctx: StageContext) -> StageSummary:
    params, tmp = ctx.params, ctx.tmp
    cfg = params.audio.train
    data = load_audio_split(ctx.inputs["shards"], "train")
    encoder = build_encoder(params)
    head = projection_head(encoder.out_dim, cfg.encoder.proj_dim)

    def on_epoch(epoch: int, stats: dict) -> None:
        mlflow.log_metrics({k: v for k, v in stats.items() if isinstance(v, float)}, step=epoch + 1)
        log.info("audio.train %s epoch %d: loss %.4f%s", cfg.method, epoch + 1, stats["loss"],
                 f", chosen negatives' similarity {stats['negative_similarity']:.3f}" if "chosen" in stats else "")

    history = train_audio_ssl(encoder, head, data.logmel, method=cfg.method, epochs=cfg.epochs,
                              batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                              temperature=cfg.temperature, augment=cfg.augment.model_dump(),
                              negatives=cfg.negatives.model_dump(), seed=params.seed, on_epoch=on_epoch)
    config = {"encoder": encoder.config, "features": data.settings.to_dict(), "norm": data.stats,
              "method": cfg.method, "epochs": cfg.epochs, "train_clips": len(data.logmel)}
    save_tensors(tmp / "encoder.safetensors", encoder.state_dict(), config)
    plots = []
    if history:
        line_plot([h["epoch"] for h in history], {"loss": [h["loss"] for h in history]}, tmp / "loss.png",
                  xlabel="epoch", ylabel="NT-Xent", title=f"audio.train {cfg.method}")
        plots.append("loss.png")
    _views_figure(encoder, head, data.logmel[:3], params, tmp / "views.png")
    plots.append("views.png")
    last = history[-1] if history else {}
    metrics = {"final_loss": last.get("loss", float("nan")), "train_clips": len(data.logmel)}
    if "negative_similarity" in last:
        metrics["negative_similarity_first"] = history[0]["negative_similarity"]
        metrics["negative_similarity_last"] = last["negative_similarity"]
    md = (f"- audio encoder: **{cfg.method}** ({AUDIO_METHODS[cfg.method].summary}), {cfg.epochs} epochs on "
          f"{len(data.logmel)} clips; final loss {metrics['final_loss']:.4f}")
    if "negative_similarity" in last:
        md += (f"; chosen negatives' cosine similarity to their anchors {metrics['negative_similarity_first']:.3f} "
               f"(epoch 1) → {metrics['negative_similarity_last']:.3f}; chosen transforms {last['chosen']}")
    md += f"\n\n![anchor, positive and hardest positional negative]({(ctx.out / 'views.png').resolve().as_uri()})"
    return StageSummary(metrics=metrics, markdown=md, plots=plots)
