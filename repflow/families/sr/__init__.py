"""The super-resolution family: SHSR (sequential multi-scale blocks + distribution transformation) against an
EDSR-style baseline and bicubic, by the field's convention (Y-PSNR / SSIM with the border shaved).

prep (real photos split by photo → HR patches with MATLAB-style bicubic LR versions, held-out whole photos)
→ train (one model per scale, L1, resumable) → evaluate (Y-PSNR / SSIM, self-ensemble, parameters, MACs,
images/s, before/after crops) → register (``repflow-sr-x2`` ...; alias gated on Y-PSNR). Params under ``sr:``;
``repflow upscale IN.png OUT.png --scale 2`` uses the registered model.

The declaration is read on first use of ``FAMILY``, so the networks and metrics import with torch alone.
"""


def __getattr__(name: str):
    if name == "FAMILY":
        from repflow.families.sr.declaration import FAMILY

        return FAMILY
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
