"""av.evaluate: what each representation model's latents hold, on speakers no model saw in training.

- **Few-label emotion** from the static latent (MDVAE's w; the DVAEs' w; the per-frame VAE's mean z):
  k labelled clips per emotion drawn from the training speakers' clips (``av.evaluate.draws`` draws per k),
  a classifier fitted on them, accuracy on every clip of the validation speakers (``val_emotion_k*``) and of
  the test speakers (``emotion_k*``). **Few-label identity** among the test speakers: 2 labelled clips per
  speaker from half of their clips, scored on the other half.
- **Information** of the static and of the dynamic latents (per frame) about emotion and identity on the
  test speakers: per-coordinate kNN mutual information (mean over coordinates, nats) and the grouped linear
  read-out :func:`~repflow.families.av.probes.linear_information` (emotion: folds of whole speakers, so only
  what holds across speakers counts).
- **Latent swaps** (MDVAE): w of one test clip with the dynamics of another, decoded through the VQ-VAEs to
  an image strip and a wav (Griffin-Lim).
- **Audio-visual denoising**: test faces masked or noised, restored by each model that reads faces (MDVAE and
  the per-frame VAE with the clean speech), PSNR against the clean frames, beside the VQ-VAE alone.
"""
from __future__ import annotations

import json
import logging

import soundfile
import torch
from PIL import Image

from repflow.families.av.baselines import SEQUENCE_MODELS
from repflow.families.av.probes import linear_information, mutual_information, per_frame_samples
from repflow.probe import few_label_accuracy
from repflow.families.av.stages.prep import load_split
from repflow.families.av.stages.train import load_models
from repflow.families.av.stages.vqvae import load_latents, load_vqvaes
from repflow.families.av.swaps import denoising_psnr, image_strip, render_latents, spectra_to_waveform, swap_static
from repflow.manifest import atomic_write_text, read_manifest
from repflow.report import bar_plot, markdown_table
from repflow.stage import StageContext, StageSummary

log = logging.getLogger("repflow.av.evaluate")


def _inputs(latents: dict, model_name: str) -> dict:
    return {m: latents[m] for m in SEQUENCE_MODELS[model_name].modalities}


def run(ctx: StageContext) -> StageSummary:
    params, tmp = ctx.params, ctx.tmp
    cfg = params.av.evaluate
    latents = {s: load_latents(ctx.inputs["latents"], s) for s in ("train", "val", "test")}
    models = load_models(ctx.inputs["models"])
    vq = load_vqvaes(ctx.inputs["latents"])
    face, speech = vq["face"][0], vq["speech"][0]
    prep_meta = read_manifest(ctx.inputs["prep"], verify=False)["meta"]
    test, train = latents["test"], latents["train"]
    ks = tuple(cfg.ks)
    metrics, rows = {}, []
    for name, model in models.items():
        with torch.no_grad():
            static = {s: model.static(_inputs(latents[s], name)) for s in latents if len(latents[s]["audio"])}
            dynamic = model.dynamic(_inputs(test, name))
        row = {"model": name, "static": SEQUENCE_MODELS[name].static_latent}
        for split, prefix in (("val", "val_"), ("test", "")):
            if split not in static:
                continue
            acc = few_label_accuracy(static["train"], train["emotion"], static[split], latents[split]["emotion"],
                                     ks=ks, draws=cfg.draws, seed=params.seed, classifier=cfg.classifier)
            for k in ks:
                metrics[f"{name}/{prefix}emotion_k{k}"] = acc[k]["mean"]
                metrics[f"{name}/{prefix}emotion_k{k}_std"] = acc[k]["std"]
                if not prefix:
                    row[f"emotion k={k}"] = f"{acc[k]['mean']:.3f} ± {acc[k]['std']:.3f}"
        identity = few_label_accuracy(static["test"][::2], test["speaker"][::2], static["test"][1::2],
                                      test["speaker"][1::2], ks=(2,), draws=cfg.draws, seed=params.seed,
                                      classifier=cfg.classifier)
        metrics[f"{name}/identity_k2"] = row["identity k=2"] = identity[2]["mean"]
        frames_x, frames_emotion = per_frame_samples(dynamic, test["emotion"])
        _, frames_speaker = per_frame_samples(dynamic, test["speaker"])
        frame_groups = test["speaker"].repeat_interleave(dynamic.shape[1])
        folds = min(5, len(set(test["speaker"].tolist())))
        info = {
            "mi_static_emotion": mutual_information(static["test"], test["emotion"], seed=params.seed)["mean"],
            "mi_static_identity": mutual_information(static["test"], test["speaker"], seed=params.seed)["mean"],
            "mi_dynamic_emotion": mutual_information(frames_x, frames_emotion, seed=params.seed)["mean"],
            "mi_dynamic_identity": mutual_information(frames_x, frames_speaker, seed=params.seed)["mean"],
            "li_static_emotion": linear_information(static["test"], test["emotion"], groups=test["speaker"],
                                                    folds=folds, seed=params.seed),
            "li_dynamic_emotion": linear_information(frames_x, frames_emotion, groups=frame_groups,
                                                     folds=folds, seed=params.seed),
        }
        metrics.update({f"{name}/{k}": v for k, v in info.items()})
        row.update({k: v for k, v in info.items()})
        rows.append(row)
    a, b = _swap_pair(test)
    faces = load_split(ctx.inputs["prep"], "test", limit=max(cfg.denoise_clips, b + 1))
    n = min(cfg.denoise_clips, len(faces["frames"]))
    readers = {k: m for k, m in models.items() if "visual" in SEQUENCE_MODELS[k].modalities}
    denoise = []
    for kind, strength in (("mask", cfg.mask_strength), ("noise", cfg.noise_strength)):
        scores = denoising_psnr(readers, faces["frames"][:n], faces["spectra"][:n], vq_visual=face, vq_audio=speech,
                                kind=kind, strength=strength, seed=params.seed)
        metrics.update({f"denoise_{kind}/{k}": v for k, v in scores.items()})
        denoise.append({"corruption": f"{kind} {strength:g}", **scores})
    plots = []
    if "mdvae" in models:
        pick = {k: test[k][[a]] for k in ("audio", "visual")}, {k: test[k][[b]] for k in ("audio", "visual")}
        with torch.no_grad():
            swapped = render_latents(swap_static(models["mdvae"], *pick), vq_audio=speech, vq_visual=face)
            rebuilt = [render_latents(models["mdvae"].reconstruct(p), vq_visual=face)["frames"][0] for p in pick]
        strip = image_strip([faces["frames"][a], rebuilt[0], faces["frames"][b], rebuilt[1], swapped["frames"][0]],
                            every=3)
        Image.fromarray(strip).save(tmp / "swap.png")
        wave = spectra_to_waveform(swapped["spectra"][0], sample_rate=prep_meta["sample_rate"],
                                   fps=prep_meta["fps"] or 25.0)
        soundfile.write(tmp / "swap.wav", wave.numpy(), prep_meta["sample_rate"])
        plots.append("swap.png")
    emotion_names = prep_meta["emotions"]
    bar_plot([f"k={k}" for k in ks], {name: [metrics[f"{name}/emotion_k{k}"] for k in ks] for name in models},
             tmp / "few_label.png", ylabel=f"emotion accuracy (chance {1 / len(emotion_names):.2f})",
             errors={name: [metrics[f"{name}/emotion_k{k}_std"] for k in ks] for name in models},
             title="av.evaluate: few-label emotion from the static latent, held-out speakers")
    plots.insert(0, "few_label.png")
    registered = params.av.register.model
    headline = {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith(f"{registered}/")}
    metrics.update(headline)
    atomic_write_text(tmp / "metrics.json", json.dumps(metrics, indent=1, sort_keys=True))
    protocol = {"latents": read_manifest(ctx.inputs["latents"], verify=False)["digest"], "ks": list(ks),
                "draws": cfg.draws, "classifier": cfg.classifier, "seed": params.seed}
    atomic_write_text(tmp / "protocol.json", json.dumps(protocol, indent=1, sort_keys=True))
    log.info("av.evaluate: emotion k=%d on test speakers: %s", ks[-1],
             ", ".join(f"{m} {metrics[f'{m}/emotion_k{ks[-1]}']:.3f}" for m in models))
    md = (f"- {len(test['audio'])} test clips of {len(set(test['speaker'].tolist()))} held-out speakers; "
          f"{len(emotion_names)} emotions ({', '.join(emotion_names)}); labelled clips from the training speakers, "
          f"{cfg.draws} draws per k, {cfg.classifier} read-out; MI in nats (kNN, mean per coordinate), li = "
          "linear information across speakers (nats)\n\n" + markdown_table(rows, floatfmt="{:.3f}")
          + "\n\n**Denoising** (PSNR dB against the clean test faces)\n\n" + markdown_table(denoise, floatfmt="{:.2f}")
          + (f"\n\n**Swap** (rows: clip A, its reconstruction, clip B, its reconstruction, A's w with B's dynamics; "
             f"audio: [swap.wav]({(ctx.out / 'swap.wav').resolve().as_uri()}))\n\n"
             f"![swap]({(ctx.out / 'swap.png').resolve().as_uri()})" if "mdvae" in models else ""))
    return StageSummary(metrics=metrics, markdown=md, plots=plots)


def _swap_pair(test: dict) -> tuple[int, int]:
    """Two test clips of different speakers and different emotions (the first such pair)."""
    for b in range(1, len(test["speaker"])):
        if test["speaker"][b] != test["speaker"][0] and test["emotion"][b] != test["emotion"][0]:
            return 0, b
    return 0, min(1, len(test["speaker"]) - 1)
