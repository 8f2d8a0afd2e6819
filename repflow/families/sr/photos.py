"""Photos for the super-resolution family: real photographs as uint8 RGB arrays, read offline.

Sources (:data:`PHOTO_SOURCES`):
- ``skimage``: the photographs bundled inside the scikit-image wheel (no pooch download; see
  :data:`SKIMAGE_COLOUR` and :data:`SKIMAGE_GREY`).
- ``mate-backgrounds``: the 12 nature photos of Debian's ``mate-backgrounds`` (1280x1024 to 2560x1600 JPEG),
  ``/usr/share/backgrounds/mate/nature/*.jpg``.
- ``folder``: any folder of png/jpg/jpeg/bmp/webp/tif/tiff files (suffix case-insensitive, not recursive).

Photos come in sorted order (by name), at full size; the stages cut patches from them. Every photo is RGB:
PIL converts palette/grey/alpha files, grey scikit-image photos are stacked to three equal channels.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from repflow.progress import progress
from repflow.sources import SourceError, folder_files

__all__ = ["Photos", "SourceError", "read_photos", "PHOTO_SOURCES", "PHOTO_SUFFIXES", "SKIMAGE_COLOUR",
           "SKIMAGE_GREY", "MATE_NATURE"]

PHOTO_SOURCES = ("skimage", "mate-backgrounds", "folder")
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
MATE_NATURE = Path("/usr/share/backgrounds/mate/nature")
MATE_INSTALL = "apt-get install mate-backgrounds"

SKIMAGE_COLOUR = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry", "retina",
                  "rocket", "stereo_motorcycle")
"""The colour photographs of ``skimage.data`` that load offline (``stereo_motorcycle``: its left view)."""
SKIMAGE_GREY = ("brick", "camera", "coins", "grass", "gravel", "moon")
"""Grey photographs of ``skimage.data``, stacked to R = G = B. Kept because the field evaluates on the Y
channel, where a grey photo's fine texture (brick, grass, gravel) is as informative as a colour one's, and
14 photos split better by photo than 8. Left out: ``clock`` (motion-blurred on purpose), ``text``/``page``
(scanned/thresholded documents), ``cell``/``microaneurysms`` (tiny or flat microscopy), synthetic images
(checkerboard, colorwheel, logo, shepp_logan_phantom, binary_blobs, horse), ``lfw_subset`` (25x25)."""


@dataclass
class Photos:
    """``images[i]``: uint8 (H_i, W_i, 3) RGB photo named ``names[i]`` (source-relative), in sorted order.
    ``origin`` says where they came from; ``skipped`` lists ``{"file", "error"}`` for files that did not decode."""

    images: list[np.ndarray]
    names: list[str]
    origin: str
    skipped: list[dict[str, str]] = field(default_factory=list)


def _rgb(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return np.ascontiguousarray(array[..., :3], dtype=np.uint8)


def read_skimage() -> Photos:
    import skimage
    import skimage.data as sd

    names = sorted(SKIMAGE_COLOUR + SKIMAGE_GREY)
    images = []
    for name in progress(names, desc="skimage: loading photos", unit="photo"):
        image = getattr(sd, name)()
        images.append(_rgb(image[0] if name == "stereo_motorcycle" else image))
    return Photos(images, names, origin=f"scikit-image {skimage.__version__} skimage.data (bundled)")


def _decode(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        im.load()
        return _rgb(np.asarray(im.convert("RGB")))


def _read_files(files: list[Path], root: Path, source: str) -> Photos:
    images, names, skipped = [], [], []
    for path in progress(files, desc=f"{source}: decoding photos", unit="photo"):
        try:
            images.append(_decode(path))
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as exc:
            skipped.append({"file": str(path), "error": f"{type(exc).__name__}: {exc}"})
            continue
        names.append(path.relative_to(root).as_posix())
    if not images:
        first = f"; first error: {skipped[0]['file']}: {skipped[0]['error']}" if skipped else ""
        raise SourceError(f"{source}: none of the {len(files)} image files in {root} could be decoded{first}")
    return Photos(images, names, origin=str(root), skipped=skipped)


def read_folder(folder: Path, source: str = "folder") -> Photos:
    """Every file of ``folder`` (not sub-folders) whose suffix is in :data:`PHOTO_SUFFIXES`, sorted by name."""
    if not folder.is_dir():
        raise SourceError(f"{source}: folder {folder} does not exist")
    walk = folder_files(folder, PHOTO_SUFFIXES, recursive=False)  # links that leave it skipped, duplicates once
    if not walk.files:
        raise SourceError(f"{source}: no {'/'.join(s[1:] for s in PHOTO_SUFFIXES)} files in {folder}")
    photos = _read_files(walk.files, folder, source)
    photos.skipped[:0] = [{"file": s["file"], "error": s["reason"]} for s in walk.skipped]
    return photos


def read_mate_backgrounds(folder: Path = MATE_NATURE) -> Photos:
    if not folder.is_dir() or not any(folder.glob("*.jpg")):
        raise SourceError(f"mate-backgrounds: no nature photos in {folder} ({MATE_INSTALL})")
    files = sorted(folder.glob("*.jpg"))
    return _read_files(files, folder, "mate-backgrounds")


def read_photos(source: str, path: str | None = None) -> Photos:
    """Photos of ``source`` (one of :data:`PHOTO_SOURCES`). ``path`` is required for ``folder``, optional for
    ``mate-backgrounds`` (default :data:`MATE_NATURE`) and not allowed for ``skimage``."""
    if source not in PHOTO_SOURCES:
        raise SourceError(f"unknown photo source {source!r}; allowed: {', '.join(PHOTO_SOURCES)}")
    if source == "skimage":
        if path is not None:
            raise SourceError(f"skimage: reads the photos bundled with scikit-image and no folder, "
                                   f"got path {path!r}")
        return read_skimage()
    if source == "mate-backgrounds":
        return read_mate_backgrounds(MATE_NATURE if path is None else Path(path))
    if path is None:
        raise SourceError("folder: needs a path (a folder of png/jpg/jpeg/bmp/webp/tif images)")
    return read_folder(Path(path))
