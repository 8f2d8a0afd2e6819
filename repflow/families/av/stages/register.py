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

from repflow.families.av.baselines import SEQUENCE_MODELS
from repflow.families.av.stages.prep import load_split
from repflow.families.av.stages.train import load_models
from repflow.families.av.stages.vqvae import load_latents, load_vqvaes
from repflow.manifest import atomic_write_text
from repflow.registration import Registration
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
    reg = Registration(ctx)
    cfg = reg.section
    latents_dir, models_dir = ctx.inputs["latents"], ctx.inputs["models"]
    metrics, score, protocol = reg.evaluation()
    models = load_models(models_dir)
    test = load_latents(latents_dir, "test")
    dims = {"audio": test["audio"].shape[-1], "visual": test["visual"].shape[-1]}
    example = torch.cat([test["audio"][:4], test["visual"][:4]], -1).numpy()
    common = reg.tags(inputs=("latents", "models", "evaluation"))
    results = {}
    tags = {**common, **reg.tags({k: v for k, v in metrics.items() if "/" not in k}, inputs=()),
            "repflow.model": cfg.model, "repflow.static_latent": SEQUENCE_MODELS[cfg.model].static_latent}
    results[cfg.model_name] = reg.register(
        StaticEncoder(models[cfg.model], dims).eval(), example, score=score, protocol=protocol, tags=tags,
        files=(models_dir / f"{cfg.model}.safetensors", models_dir / f"{cfg.model}.json"))
    vq = load_vqvaes(latents_dir)
    prep_frames = load_split(ctx.inputs["prep"], "test", limit=1)
    raw = {"face": prep_frames["frames"][0, :4], "speech": prep_frames["spectra"][0, :4]}
    for spec in ctx.stage.registers[1:]:
        which = "face" if "face" in spec.name else "speech"
        _, vq_score, vq_protocol = reg.evaluation(latents_dir, "av.vqvae", spec.metric)
        results[spec.name] = reg.register(
            PrequantEncoder(vq[which][0]).eval(), raw[which].numpy(), spec=spec, name=spec.name, criterion=spec.metric,
            score=vq_score, protocol=vq_protocol, tags={**common, "repflow.model": f"{which}_vqvae"},
            files=(latents_dir / f"{which}.safetensors", latents_dir / f"{which}.json"),
            identity={"vqvae": ctx.lineage["inputs"]["latents"], "criterion": spec.metric})
    atomic_write_text(ctx.tmp / "register.json", json.dumps(results, indent=1))
    md = "\n".join(reg.line(r) for r in results.values())
    main = results[cfg.model_name]
    return StageSummary(metrics={"score": score, "alias_moved": main["alias_moved"], "version": main["version"],
                                 "uri": main["uri"], "model": cfg.model_name, "alias": cfg.alias}, markdown=md)
