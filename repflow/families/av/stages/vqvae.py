"""av.vqvae: stage 1 of MDVAE, a VQ-VAE per modality trained on the training speakers' frames (64×64 faces:
:class:`~repflow.families.av.vqvae.FrameVQVAE`; power-spectrum frames with an Itakura-Saito loss:
:class:`~repflow.families.av.vqvae.SpectrumVQVAE`), then every clip's pre-quantisation latents written as
sequences, the input of stage 2.

Written: ``face.safetensors`` and ``speech.safetensors`` (:func:`~repflow.families.av.vqvae.save_vqvae`:
weights + config, so a checkpoint that does not fit the frames is an error naming it) and latent shards of
splits ``train`` / ``val`` / ``test``, each sample with ``audio.npy`` (T, D_a) and ``visual.npy`` (T, D_v)
float32 and the clip's ``labels.json``; ``metrics.json`` / ``protocol.json`` (test-face PSNR and test-speech
Itakura-Saito divergence on the first 16 test clips, what av.register gates the VQ-VAEs on; each codebook's
perplexity over the last 50 steps and how many dead codes were restarted: a collapsed codebook shows there);
test-face reconstructions and loss curves for the report.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from PIL import Image

from repflow.families.av.stages.prep import SPLITS, load_split
from repflow.families.av.swaps import image_strip, psnr
from repflow.families.av.training import random_batches
from repflow.families.av.vqvae import (FrameVQVAE, SpectrumVQVAE, check_frame_size, load_vqvae, save_vqvae,
                                       train_vqvae)
from repflow.manifest import atomic_write_text, read_manifest
from repflow.report import line_plot, markdown_table
from repflow.shards import ShardReader, write_split
from repflow.sources import SourceError
from repflow.stage import StageContext, StageSummary

log = logging.getLogger("repflow.av.vqvae")

MEMBERS = {"audio.npy": "npy", "visual.npy": "npy", "labels.json": "json"}
FACE_SEED, SPEECH_SEED = 1, 2
"""Offsets from ``seed`` of the two VQ-VAEs' weights and batch orders."""


def load_vqvaes(folder) -> dict:
    """{"face": (model, meta), "speech": (model, meta)} of an av.vqvae output (verified when it has a
    manifest)."""
    if (folder / "manifest.json").is_file():
        read_manifest(folder, stage="av.vqvae")
    return {name: load_vqvae(folder / f"{name}.safetensors") for name in ("face", "speech")}


def load_latents(folder, split: str) -> dict[str, torch.Tensor]:
    """A split of an av.vqvae output: ``audio`` (N, T, D_a), ``visual`` (N, T, D_v), ``speaker``, ``emotion``."""
    audio, visual, speaker, emotion = [], [], [], []
    for sample in ShardReader(folder).stream(split):
        audio.append(torch.from_numpy(sample["audio.npy"]))
        visual.append(torch.from_numpy(sample["visual.npy"]))
        speaker.append(sample["labels.json"]["speaker"])
        emotion.append(sample["labels.json"]["emotion"])
    return {"audio": torch.stack(audio), "visual": torch.stack(visual), "speaker": torch.tensor(speaker),
            "emotion": torch.tensor(emotion)}


def _vqvae(checkpoint: str | None, raw: torch.Tensor, key: str, build, steps: int, batch_size: int, lr: float,
           seed: int) -> tuple:
    """(VQ-VAE, training log): the one at ``checkpoint`` when given (checked against the frames' shape: a
    mismatch is an error naming the file), else a new one from ``build()`` trained on ``raw`` frames."""
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        try:
            model, meta = load_vqvae(path)
            check_frame_size(meta, raw, leading=1, checkpoint=str(path))
        except (ValueError, OSError) as exc:
            raise SourceError(f"{key}: {exc}") from None
        log.info("av.vqvae: using %s as it is (not trained)", path)
        return model, [meta.get("final") or {"reconstruction": float("nan"), "perplexity": float("nan")}]
    torch.manual_seed(seed)
    model = build()
    return model, train_vqvae(model, random_batches(raw, batch_size, seed), steps=steps, lr=lr, seed=seed)


def _perplexity(log: list[dict]) -> float:
    """Codebook perplexity (exp of the entropy of code use per batch, at most the codebook size) averaged over
    the last 50 steps: one batch's value is noisy. A collapsed codebook reads a few, whatever its size."""
    return float(sum(h["perplexity"] for h in log[-50:]) / len(log[-50:]))


def _restarted(log: list[dict]) -> int:
    """Dead codes restarted during training (the first step's initialisation from encoder outputs not counted);
    0 for a VQ-VAE loaded as it is."""
    return int(sum(h.get("restarted", 0) for h in log[1:]))


def run(ctx: StageContext) -> StageSummary:
    params, tmp = ctx.params, ctx.tmp
    cfg = params.av.vqvae
    data = {s: load_split(ctx.inputs["prep"], s) for s in SPLITS}
    train = data["train"]
    n, t = train["frames"].shape[:2]
    face_raw = train["frames"].reshape(n * t, *train["frames"].shape[2:])
    speech_raw = train["spectra"].reshape(n * t, -1)
    face, face_log = _vqvae(cfg.face_checkpoint, face_raw, "av.vqvae.face_checkpoint", lambda: FrameVQVAE(
        face_raw.shape[1], code_dim=cfg.code_dim, num_codes=cfg.face_codes), cfg.face_steps, cfg.face_batch_size,
                            cfg.lr, params.seed + FACE_SEED)
    speech, speech_log = _vqvae(cfg.speech_checkpoint, speech_raw, "av.vqvae.speech_checkpoint", lambda: SpectrumVQVAE(
        speech_raw.shape[1], code_dim=cfg.code_dim, num_codes=cfg.speech_codes), cfg.speech_steps,
                                cfg.speech_batch_size, cfg.lr, params.seed + SPEECH_SEED)
    face.eval()
    speech.eval()
    save_vqvae(face, tmp / "face.safetensors", {"final": face_log[-1]})
    save_vqvae(speech, tmp / "speech.safetensors", {"final": speech_log[-1]})
    ctx.meta["splits"] = {}
    with torch.no_grad():
        latents = {s: {"audio": speech.encode_sequence(d["spectra"]), "visual": face.encode_sequence(d["frames"])}
                   if len(d["frames"]) else None for s, d in data.items()}
    for s in SPLITS:
        samples = ([] if latents[s] is None else
                   ({"audio.npy": latents[s]["audio"][i].numpy(), "visual.npy": latents[s]["visual"][i].numpy(),
                     "labels.json": {"speaker": int(data[s]["speaker"][i]), "emotion": int(data[s]["emotion"][i])}}
                    for i in range(len(data[s]["frames"]))))
        ctx.meta["splits"][s] = write_split(tmp, s, samples, MEMBERS, shard_size=params.av.prep.shard_size)
    test = data["test"]
    with torch.no_grad():
        shown = test["frames"][:4]
        rebuilt = face.decode_sequence(latents["test"]["visual"][:16])
        test_psnr = psnr(rebuilt, test["frames"][:16])
        speech_test = speech.losses(test["spectra"][:16].reshape(-1, test["spectra"].shape[-1]))
    rows = [row for clip, rec in zip(shown, rebuilt[:4]) for row in (clip, rec)]
    Image.fromarray(image_strip(rows, every=3)).save(tmp / "face_reconstructions.png")
    steps = list(range(1, len(face_log) + 1))
    line_plot(steps, {"face (MSE)": [h["reconstruction"] for h in face_log]}, tmp / "face_loss.png", xlabel="step",
              ylabel="reconstruction", title="av.vqvae: face VQ-VAE")
    line_plot(list(range(1, len(speech_log) + 1)), {"speech (Itakura-Saito)": [h["reconstruction"]
                                                                               for h in speech_log]},
              tmp / "speech_loss.png", xlabel="step", ylabel="reconstruction", title="av.vqvae: speech VQ-VAE")
    metrics = {"face_test_psnr": test_psnr, "face_perplexity": _perplexity(face_log),
               "speech_test_itakura_saito": float(speech_test["reconstruction"]),
               "speech_perplexity": _perplexity(speech_log), "audio_latent_dim": speech.latent_dim,
               "visual_latent_dim": face.latent_dim, "face_codes_restarted": _restarted(face_log),
               "speech_codes_restarted": _restarted(speech_log)}
    ctx.meta.update({"audio_dim": speech.latent_dim, "visual_dim": face.latent_dim, "frames": t})
    atomic_write_text(tmp / "metrics.json", json.dumps(metrics, indent=1, sort_keys=True))
    protocol = {"prep": read_manifest(ctx.inputs["prep"], verify=False)["digest"], "test_clips": 16}
    atomic_write_text(tmp / "protocol.json", json.dumps(protocol, indent=1, sort_keys=True))
    log.info("av.vqvae: face test PSNR %.2f dB (perplexity %.0f of %d codes), speech IS %.3f (perplexity %.0f)",
             test_psnr, metrics["face_perplexity"], cfg.face_codes, metrics["speech_test_itakura_saito"],
             metrics["speech_perplexity"])
    table = [{"vq-vae": "face", "steps": cfg.face_steps, "codes": cfg.face_codes,
              "perplexity": metrics["face_perplexity"], "codes restarted": metrics["face_codes_restarted"],
              "latent per frame": face.latent_dim,
              "test": f"PSNR {test_psnr:.2f} dB"},
             {"vq-vae": "speech", "steps": cfg.speech_steps, "codes": cfg.speech_codes,
              "perplexity": metrics["speech_perplexity"], "codes restarted": metrics["speech_codes_restarted"],
              "latent per frame": speech.latent_dim,
              "test": f"Itakura-Saito {metrics['speech_test_itakura_saito']:.3f}"}]
    md = (markdown_table(table, floatfmt="{:.1f}") + "\n\n- test faces, every third frame: each original row "
          f"above its VQ-VAE reconstruction\n\n![faces]({(ctx.out / 'face_reconstructions.png').resolve().as_uri()})")
    return StageSummary(metrics=metrics, markdown=md, plots=["face_loss.png", "speech_loss.png",
                                                             "face_reconstructions.png"])
