"""Which bicubic makes the SR family's low-resolution images, and how far the usual alternatives are from it.

For every photo of each source and scale x2/x3/x4 (HR cropped to a multiple of the scale), the 8-bit LR image
is made four ways: MATLAB-style (:func:`repflow.families.sr.patches.lr_of`, the reference), PIL's BICUBIC,
torch's ``interpolate(mode="bicubic")`` (a = -0.75, no antialias) and the same with ``antialias=True``. Reported:
the RGB PSNR of each alternative LR against the reference (higher = closer), and the bicubic-upscaling
baseline's Y-PSNR/SSIM (the field's convention, :mod:`repflow.families.sr.metrics`) from the MATLAB LR and
from the PIL LR. Last, the metrics' agreement with scikit-image on the baseline outputs.

    python -m benchmarks.sr_bicubic [--sources skimage mate-backgrounds]
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("REPFLOW_PROGRESS", "0")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks._common import write_results  # noqa: E402
from repflow.families.sr.imresize import imresize  # noqa: E402
from repflow.families.sr.metrics import psnr_y, ssim_y  # noqa: E402
from repflow.families.sr.patches import lr_of  # noqa: E402
from repflow.families.sr.photos import read_photos  # noqa: E402
from repflow.progress import progress  # noqa: E402

SCALES = (2, 3, 4)


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].to(torch.float64) / 255


def _array(x: torch.Tensor) -> np.ndarray:
    return torch.round(x.clamp(0, 1) * 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()


def _psnr_rgb(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def _agreement(sr: np.ndarray, hr: np.ndarray, scale: int) -> tuple[float, float]:
    from skimage.color import rgb2ycbcr
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    y_sr, y_hr = (rgb2ycbcr(x)[scale:-scale, scale:-scale, 0] for x in (sr, hr))
    theirs_psnr = peak_signal_noise_ratio(y_hr, y_sr, data_range=255)
    theirs_ssim = structural_similarity(y_hr, y_sr, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                        data_range=255)
    sr_t, hr_t = (torch.from_numpy(x.copy()).permute(2, 0, 1)[None] for x in (sr, hr))
    return (abs(theirs_psnr - float(psnr_y(sr_t, hr_t, scale))), abs(theirs_ssim - float(ssim_y(sr_t, hr_t, scale))))


def run_source(source: str) -> tuple[list[dict], list[dict], float, float]:
    photos = read_photos(source)
    summary, per_photo = [], {name: {"source": source, "photo": name} for name in photos.names}
    worst_psnr = worst_ssim = 0.0
    for scale in SCALES:
        gaps: dict[str, list[float]] = {"pil": [], "torch": [], "torch_aa": []}
        base_psnr, base_ssim, pil_psnr = [], [], []
        for name, image in progress(list(zip(photos.names, photos.images)), desc=f"{source} x{scale}", unit="photo"):
            h, w = image.shape[0] // scale * scale, image.shape[1] // scale * scale
            hr = np.ascontiguousarray(image[:h, :w])
            size = (h // scale, w // scale)
            reference = lr_of(hr, scale)
            hr_t = _tensor(hr)
            alternatives = {
                "pil": np.asarray(Image.fromarray(hr).resize(size[::-1], Image.BICUBIC)),
                "torch": _array(F.interpolate(hr_t, size=size, mode="bicubic", align_corners=False)),
                "torch_aa": _array(F.interpolate(hr_t, size=size, mode="bicubic", align_corners=False,
                                                 antialias=True)),
            }
            for key, low in alternatives.items():
                gaps[key].append(_psnr_rgb(low, reference))
            upscaled = imresize(_tensor(reference), scale).clamp(0, 1)
            base_psnr.append(float(psnr_y(upscaled, hr_t, scale)))
            base_ssim.append(float(ssim_y(upscaled, hr_t, scale)))
            pil_psnr.append(float(psnr_y(imresize(_tensor(alternatives["pil"]), scale).clamp(0, 1), hr_t, scale)))
            per_photo[name].update({"size": f"{image.shape[0]}x{image.shape[1]}",
                                    f"bicubic_x{scale}_psnr_y": base_psnr[-1]})
            d_psnr, d_ssim = _agreement(_array(upscaled), hr, scale)
            worst_psnr, worst_ssim = max(worst_psnr, d_psnr), max(worst_ssim, d_ssim)
        row = {"source": source, "scale": scale, "photos": len(photos.images)}
        for key, values in gaps.items():
            row[f"{key}_vs_matlab_lr_psnr_mean"] = float(np.mean(values))
            row[f"{key}_vs_matlab_lr_psnr_min"] = float(np.min(values))
        row.update({"bicubic_psnr_y": float(np.mean(base_psnr)), "bicubic_ssim_y": float(np.mean(base_ssim)),
                    "bicubic_psnr_y_from_pil_lr": float(np.mean(pil_psnr))})
        summary.append(row)
    return summary, list(per_photo.values()), worst_psnr, worst_ssim


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", nargs="+", default=["skimage"], choices=["skimage", "mate-backgrounds"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows, photos, worst = [], [], [0.0, 0.0]
    for source in args.sources:
        summary, per_photo, d_psnr, d_ssim = run_source(source)
        rows += summary
        photos += per_photo
        worst = [max(worst[0], d_psnr), max(worst[1], d_ssim)]
    notes = [f"metrics vs scikit-image on every bicubic output: max |dPSNR| = {worst[0]:.1e} dB, "
             f"max |dSSIM| = {worst[1]:.1e}",
             "*_vs_matlab_lr_psnr: RGB PSNR (dB) of that LR against the MATLAB-style LR; higher = closer",
             "bicubic_psnr_y / ssim_y: MATLAB-bicubic upscaling of the MATLAB LR, Y channel, scale px shaved"]
    write_results("sr_bicubic", "Bicubic LR images: MATLAB-style vs PIL and torch", rows, notes,
                  extra={"per_photo": photos})


if __name__ == "__main__":
    main()
