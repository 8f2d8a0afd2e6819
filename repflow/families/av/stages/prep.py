"""av.prep: audio-visual clips split by speaker (no speaker in two splits), as shards.

Sources: ``synthetic`` (:func:`~repflow.families.av.synthetic.make_corpus`: espeak-ng speech and a drawn face
mouthing it, identity and emotion static per clip) or ``folder`` (``<path>/<speaker>/<emotion>/<clip>``, any
video with sound, :func:`~repflow.families.av.user_clips.read_user_clip`; a clip without an audio stream or
with fewer than ``frames`` frames is an error naming it).

Each sample holds ``frames.png`` (the clip's T frames side by side: uint8 (S, T·S, 3), lossless and small for
drawn faces), ``spectra.npy`` (float32 (T, F) power spectra aligned to the frames), ``visemes.npy`` (int64
(T,), -1 unknown) and ``labels.json`` ({speaker, emotion, text, name, fps}). The manifest meta records the speaker
split, emotion names, frame size, fps and sample rate.
"""
from __future__ import annotations

import itertools
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from repflow.families.av.clips import FACE_SIZE, N_FFT, SAMPLE_RATE, AVClip
from repflow.families.av.emotions import EMOTION_NAMES
from repflow.families.av.speakers import split_speakers
from repflow.families.av.synthetic import make_corpus
from repflow.families.av.user_clips import read_user_clip
from repflow.manifest import read_manifest
from repflow.report import bar_plot, markdown_table
from repflow.shards import ShardReader, write_split
from repflow.sources import SourceError, folder_files
from repflow.stage import StageContext, StageSummary

log = logging.getLogger("repflow.av.prep")

SPLITS = ("train", "val", "test")
MEMBERS = {"frames.png": "png", "spectra.npy": "npy", "visemes.npy": "npy", "labels.json": "json"}
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v")


def _folder_clips(root: Path, frames: int) -> tuple[list[AVClip], list[str], list[str]]:
    """Every clip under ``root/<speaker>/<emotion>/`` (speaker and emotion ids by sorted folder name)."""
    if not root.is_dir():
        raise SourceError(f"av.prep.path {root}: not a folder (expected <path>/<speaker>/<emotion>/<clip>)")
    walk = folder_files(root, VIDEO_SUFFIXES)  # links that loop or leave skipped, a file reached twice read once
    for skipped in walk.skipped:
        log.warning("av.prep: skipped %s: %s", skipped["file"], skipped["reason"])
    files = [p for p in walk.files if len(p.relative_to(root).parts) == 3]
    if not files:
        raise SourceError(f"av.prep.path {root}: no video files at <speaker>/<emotion>/<clip> "
                          f"(suffixes {list(VIDEO_SUFFIXES)})")
    speakers = sorted({p.parent.parent.name for p in files})
    emotions = sorted({p.parent.name for p in files})
    clips = []
    for p in files:
        clip = read_user_clip(p, min_frames=frames, max_frames=frames)
        clip.speaker, clip.emotion = speakers.index(p.parent.parent.name), emotions.index(p.parent.name)
        clips.append(clip)
    return clips, speakers, emotions


def _sample(clip: AVClip) -> dict:
    return {"frames.png": np.concatenate(list(clip.frames), axis=1), "spectra.npy": clip.spectra.astype(np.float32),
            "visemes.npy": clip.visemes.astype(np.int64),
            "labels.json": {"speaker": int(clip.speaker), "emotion": int(clip.emotion), "text": clip.text,
                            "name": clip.name, "fps": float(clip.fps)}}


def run(ctx: StageContext) -> StageSummary:
    params, tmp = ctx.params, ctx.tmp
    cfg = params.av.prep
    if cfg.source == "synthetic":
        speaker_names = [f"s{i:03d}" for i in range(cfg.speakers)]
        emotion_names = list(EMOTION_NAMES)
        split = split_speakers(list(range(cfg.speakers)), seed=params.seed, val_fraction=cfg.val_fraction,
                               test_fraction=cfg.test_fraction)
        clips = {s: make_corpus(cfg.speakers, cfg.clips_per_speaker, params.seed, speaker_ids=ids, n_frames=cfg.frames,
                                fps=cfg.fps, max_words=cfg.max_words) for s, ids in split.items()}
        origin = f"espeak-ng + drawn faces, {cfg.speakers} speakers × {cfg.clips_per_speaker} clips"
    else:
        root = Path(cfg.path).expanduser()
        found, speaker_names, emotion_names = _folder_clips(root, cfg.frames)
        if len(speaker_names) < 3:
            raise SourceError(f"av.prep.path {root}: {len(speaker_names)} speaker folder(s); a split by speaker "
                              "needs at least 3")
        split = split_speakers(list(range(len(speaker_names))), seed=params.seed, val_fraction=cfg.val_fraction,
                               test_fraction=cfg.test_fraction)
        clips = {s: [c for c in found if c.speaker in ids] for s, ids in split.items()}
        origin = str(root)
    ctx.meta.update({"source": cfg.source, "origin": origin, "frames": cfg.frames, "size": FACE_SIZE,
                     "fps": cfg.fps if cfg.source == "synthetic" else None, "sample_rate": SAMPLE_RATE,
                     "bins": N_FFT // 2 + 1, "emotions": emotion_names, "speakers": speaker_names,
                     "speaker_split": {s: list(ids) for s, ids in split.items()}, "splits": {}})
    rows, emotion_counts = [], {}
    for name in SPLITS:
        counts = Counter()

        def samples(name=name, counts=counts):
            for clip in clips[name]:
                counts[clip.emotion] += 1
                yield _sample(clip)

        ctx.meta["splits"][name] = write_split(tmp, name, samples(), MEMBERS, shard_size=cfg.shard_size,
                                               show_progress=True)
        emotion_counts[name] = counts
        rows.append({"split": name, "speakers": len(split[name]), "clips": ctx.meta["splits"][name]["count"],
                     **{emotion_names[e]: counts[e] for e in range(len(emotion_names))}})
    if not all(ctx.meta["splits"][s]["count"] for s in ("train", "test")):
        raise SourceError(f"{origin}: the train and test splits need clips, got "
                          f"{ {s: ctx.meta['splits'][s]['count'] for s in SPLITS} }")
    bar_plot(list(emotion_names), {s: [emotion_counts[s][e] for e in range(len(emotion_names))] for s in SPLITS},
             tmp / "emotions.png", ylabel="clips", title=f"av.prep {cfg.source}: clips per emotion and split")
    log.info("av.prep: %s; clips train / val / test %s", origin, "/".join(str(r["clips"]) for r in rows))
    rate = f"{cfg.fps:g} fps" if cfg.source == "synthetic" else "each file's frame rate"
    md = (f"- clips: **{cfg.source}** ({origin}); T = {cfg.frames} frames of {FACE_SIZE}×{FACE_SIZE} at {rate}, "
          f"with {N_FFT // 2 + 1}-bin power spectra aligned to the frames; split by speaker (no speaker in two "
          "splits)\n\n" + markdown_table(rows))
    return StageSummary(metrics={f"{r['split']}_clips": r["clips"] for r in rows}, markdown=md,
                        plots=["emotions.png"])


def load_split(folder: Path, split: str, limit: int | None = None) -> dict[str, torch.Tensor]:
    """A split of a verified av.prep output as tensors (its first ``limit`` clips when given): ``frames`` uint8
    (N, T, S, S, 3), ``spectra`` float32 (N, T, F), ``speaker`` and ``emotion`` int64 (N,)."""
    meta = read_manifest(folder, verify=False, stage="av.prep")["meta"]
    t, s = meta["frames"], meta["size"]
    frames, spectra, speaker, emotion = [], [], [], []
    for sample in itertools.islice(ShardReader(folder).stream(split), limit):
        image = sample["frames.png"]  # (3, S, T·S)
        frames.append(image.reshape(3, s, t, s).permute(2, 1, 3, 0))
        spectra.append(torch.from_numpy(sample["spectra.npy"]))
        speaker.append(sample["labels.json"]["speaker"])
        emotion.append(sample["labels.json"]["emotion"])
    if not frames:
        return {"frames": torch.empty(0, t, s, s, 3, dtype=torch.uint8),
                "spectra": torch.empty(0, t, meta["bins"]), "speaker": torch.empty(0, dtype=torch.long),
                "emotion": torch.empty(0, dtype=torch.long)}
    return {"frames": torch.stack(frames), "spectra": torch.stack(spectra),
            "speaker": torch.tensor(speaker), "emotion": torch.tensor(emotion)}
