"""The audio-visual family: MDVAE (Sadok et al., Neural Networks 2024: per-modality VQ-VAEs, then a multimodal
dynamical VAE with a static latent w, a shared dynamic latent and one per modality) against audio-only and
visual-only dynamical VAEs and a per-frame VAE, on talking faces with speech.

prep (synthetic clips: espeak-ng speech with phoneme timings and a drawn face mouthing it, identity and
emotion static per clip; or your own videos; split by speaker) → vqvae (stage 1: a VQ-VAE per modality, the
clips' latent sequences) → train (stage 2: every representation model on the same latents, a Ray task each)
→ evaluate (few-label emotion on held-out speakers, information of static vs dynamic latents, swaps,
denoising) → register (``repflow-mdvae`` and the two VQ-VAEs). Params under ``av:``.

The declaration is read on first use of ``FAMILY``, so the models and data modules import with torch alone.
"""


def __getattr__(name: str):
    if name == "FAMILY":
        from repflow.families.av.declaration import FAMILY

        return FAMILY
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
