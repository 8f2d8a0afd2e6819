"""av.register: the representation model ``av.register.model`` (MDVAE by default) as ``repflow-mdvae``, and the
two stage-1 VQ-VAEs as ``repflow-av-face-vqvae`` and ``repflow-av-speech-vqvae``.

Each alias moves only when its score beats the holder's under the same protocol: the representation model's
few-label emotion accuracy on the validation speakers (``av.register.criterion``), the face VQ-VAE's test
PSNR (higher), the speech VQ-VAE's test Itakura-Saito divergence (lower). The logged pt2 models are a
:class:`StaticEncoder` ((B, T, D_a + D_v) latents → (B, S) static representation) and each VQ-VAE's
:class:`PrequantEncoder` (raw frames → pre-quantisation latents); the safetensors checkpoints beside them
rebuild the full models.
"""
from __future__ import annotations

import json

import torch

from repflow import tracking
from repflow.families.av.baselines import SEQUENCE_MODELS
from repflow.families.av.stages.prep import load_split
from repflow.families.av.stages.train import load_models
from repflow.families.av.stages.vqvae import load_latents, load_vqvaes
from repflow.manifest import atomic_write_text
from repflow.stage import StageContext, StageSummary


class StaticEncoder(torch.nn.Module):
    """A representation model's static latent from its input latents stacked on the last axis, for export."""

    def __init__(self, model, dims: dict[str, int]):
        super().__init__()
        self.model, self.dims = model, dims

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        audio, visual = latents.split([self.dims["audio"], self.dims["visual"]], dim=-1)
        return self.model.static({"audio": audio, "visual": visual})


class PrequantEncoder(torch.nn.Module):
    """A VQ-VAE's raw frames (N, *frame_shape) → flattened pre-quantisation latents (N, latent_dim)."""

    def __init__(self, vqvae):
        super().__init__()
        self.vqvae = vqvae

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return self.vqvae.encode_prequant(self.vqvae.prepare(raw)).flatten(1)


def run(ctx: StageContext) -> StageSummary:
    params, tmp, lin = ctx.params, ctx.tmp, ctx.lineage
    cfg = params.av.register
    latents_dir, models_dir, eval_dir = ctx.inputs["latents"], ctx.inputs["models"], ctx.inputs["evaluation"]
    metrics, score, protocol = tracking.read_evaluation(eval_dir, "av.evaluate", cfg.criterion)
    models = load_models(models_dir)
    test = load_latents(latents_dir, "test")
    dims = {"audio": test["audio"].shape[-1], "visual": test["visual"].shape[-1]}
    example = torch.cat([test["audio"][:4], test["visual"][:4]], -1).numpy()
    common = {"repflow.family": "av", "repflow.input.latents": lin["inputs"]["latents"],
              "repflow.input.models": lin["inputs"]["models"], "repflow.input.evaluation": lin["inputs"]["evaluation"],
              "repflow.params": json.dumps(params.av.model_dump(mode="json"), sort_keys=True)}
    results = {}
    tags = {**common, "repflow.model": cfg.model, "repflow.static_latent": SEQUENCE_MODELS[cfg.model].static_latent}
    tags.update({f"repflow.metric.{k}": v for k, v in metrics.items() if "/" not in k})
    results[cfg.model_name] = tracking.register_champion(
        StaticEncoder(models[cfg.model], dims).eval(), cfg.model_name, example, score=score, criterion=cfg.criterion,
        protocol=protocol, alias=cfg.alias, files=(models_dir / f"{cfg.model}.safetensors",
                                                   models_dir / f"{cfg.model}.json"),
        identity={"evaluation": lin["inputs"]["evaluation"], "criterion": cfg.criterion},
        code_version=lin["code_version"], tags=tags)
    vq = load_vqvaes(latents_dir)
    prep_frames = load_split(ctx.inputs["prep"], "test", limit=1)
    raw = {"face": prep_frames["frames"][0, :4], "speech": prep_frames["spectra"][0, :4]}
    for spec in ctx.stage.registers[1:]:
        which = "face" if "face" in spec.name else "speech"
        vq_metrics, vq_score, vq_protocol = tracking.read_evaluation(latents_dir, "av.vqvae", spec.metric)
        results[spec.name] = tracking.register_champion(
            PrequantEncoder(vq[which][0]).eval(), spec.name, raw[which].numpy(), score=vq_score,
            criterion=spec.metric, protocol=vq_protocol, alias=cfg.alias,
            files=(latents_dir / f"{which}.safetensors", latents_dir / f"{which}.json"),
            identity={"vqvae": lin["inputs"]["latents"], "criterion": spec.metric},
            code_version=lin["code_version"], tags={**common, "repflow.model": f"{which}_vqvae"},
            higher_is_better=spec.direction == "max")
    atomic_write_text(tmp / "register.json", json.dumps(results, indent=1))
    md = "\n".join(f"- registered `{r['uri']}` ({r['criterion']} {r['score']:.4f}); alias `{r['alias']}` "
                   f"{'moved to it' if r['alias_moved'] else 'kept'} ({r['alias_reason']})" for r in results.values())
    main = results[cfg.model_name]
    return StageSummary(metrics={"score": score, "alias_moved": main["alias_moved"], "version": main["version"],
                                 "uri": main["uri"], "model": cfg.model_name, "alias": cfg.alias}, markdown=md)
