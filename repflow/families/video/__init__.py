"""The video watermarking family: ItoV (an image watermarking network that sees a clip of T frames as one
image with 3T channels, depthwise-separable blocks, and a frame loss for even watermark strength across
frames) against a per-frame image watermarker and a 3-D conv one.

prep (clips of T frames from real videos or pan/zoom over photos, split by video) → train (through noise,
blur, crop, frame drop and a differentiable JPEG) → evaluate (PSNR / SSIM, per-frame PSNR spread, bit
accuracy per distortion and under real H.264, MACs, clips/s) → register (``repflow-video-watermarker``).
Params under ``video:``; ``repflow watermark embed IN.mp4 OUT.mp4 --message HEX`` and ``repflow watermark
extract OUT.mp4`` use the registered model on a video of any length and size.

The declaration is read on first use of ``FAMILY``, so the networks and losses import with torch alone.
"""


def __getattr__(name: str):
    if name == "FAMILY":
        from repflow.families.video.declaration import FAMILY

        return FAMILY
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
