"""The video watermarking family as a user meets it: params errors, the split that never shares a frame
between training and test clips, messages as hex, a user's video watermarked clip by clip (any length and
size, audio kept, written atomically) and read back, training that resumes exactly, and one tiny run of its
Prefect flow through the registry to ``repflow watermark embed / extract``."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import yaml

from repflow.config import ParamsError
from repflow.families.video.data import clip_group, split_clips
from repflow.families.video.models import Watermarker
from repflow.families.video.watermark import (DEFAULT_STRENGTH, embed_tiled, embed_video, extract_video,
                                              format_message, parse_message, tile_signs, tiles, untile)
from repflow.family import parse_params
from repflow.manifest import read_manifest
from repflow.media.video import read_video
from repflow.sources import SourceError
from tests.conftest import child_env, crash_after_first_epoch, tiny_params
from tests.test_video_io import audio_payload, make_video_with_audio, moving_frames

TINY_VIDEO = {
    "prep": {"source": "kenburns", "frames": 4, "size": 16, "clips_per_video": 3, "test_fraction": 0.34},
    "train": {"bits": 8, "width": 4, "encoder_blocks": 1, "decoder_blocks": 1, "epochs": 2, "batch_size": 4,
              "frame_warmup_epochs": 1},
    "evaluate": {"h264_crfs": [28], "speed_batch": 2},
}


def video_params(**sections) -> dict:
    video = {name: dict(values) for name, values in TINY_VIDEO.items()}
    for name, values in sections.items():
        video.setdefault(name, {}).update(values)
    return {**tiny_params(), "video": video}


@pytest.mark.parametrize("section, values, expected", [
    ("prep", {"size": 33}, r"video\.prep\.size.*must be even"),
    ("train", {"model": "unet"}, r"video\.train\.model"),
    ("train", {"distortions": ["blur", "rotate"]}, r"video\.train\.distortions.*each must be one of"),
    ("train", {"frame_warmup_epochs": 2}, r"frame_warmup_epochs = 2 leaves no epoch of the frame loss"),
    ("evaluate", {"h264_crfs": [60]}, r"video\.evaluate\.h264_crfs.*0\.\.51"),
    ("register", {"criterion": "bit_accuracy/h264_crf23"}, r"video\.register\.criterion = 'bit_accuracy/h264_crf23'"),
])
def test_unusable_settings_are_params_errors_naming_the_key(section, values, expected):
    with pytest.raises(ParamsError, match=expected):
        parse_params(video_params(**{section: values}))


def test_held_out_clips_never_share_a_frame_with_training_clips():
    names = [f"{v}.mp4@{s}" for v in ("a", "b", "c") for s in range(0, 40, 5)]
    train, test = split_clips(names, frames=8, test_fraction=0.34, seed=0)
    assert len({clip_group(names[i]) for i in test}) == 1
    assert not {clip_group(names[i]) for i in train} & {clip_group(names[i]) for i in test}
    assert split_clips(names, 8, 0.34, 0) == (train, test) and split_clips(names, 8, 0.34, 1) != (train, test)
    one = [f"vtest.avi@{s}" for s in range(0, 100, 3)]
    train, test = split_clips(one, frames=8, test_fraction=0.25, seed=0)
    last_train_frame = max(int(one[i].split("@")[1]) + 8 for i in train)
    assert train and test and last_train_frame <= min(int(one[i].split("@")[1]) for i in test)
    photos = [f"{p}#{k}" for p in ("astronaut", "coffee") for k in range(3)]
    assert [clip_group(photos[i]) for i in split_clips(photos, 8, 0.5, 0)[1]] in (["astronaut"] * 3, ["coffee"] * 3)


def test_messages_are_hex_of_at_most_L_bits():
    bits = parse_message("0xC0ffee42", 32)
    assert bits.shape == (1, 32) and bits[0, :2].tolist() == [1.0, 1.0] and format_message(bits) == "c0ffee42"
    assert format_message(parse_message("5", 8)) == "05"
    with pytest.raises(ValueError, match=r"'1ff' needs 9 bits; this model carries L = 8"):
        parse_message("1ff", 8)
    with pytest.raises(ValueError, match="not a hexadecimal number"):
        parse_message("hello", 8)


class SpreadSpectrum(Watermarker):
    """Classic additive spread-spectrum watermarking (a real method, no training): bit i adds ±strength times
    a fixed random ±1 pattern P_i over the whole clip; extraction correlates the mean-removed clip with each
    P_i. It lets the file-level embed / extract be checked exactly, without depending on a trained network."""

    def __init__(self, T: int, L: int, size: int, strength: float = 0.1):
        super().__init__()
        self.T, self.L, self.strength = T, L, strength
        g = torch.Generator().manual_seed(0)
        self.register_buffer("patterns", torch.randint(0, 2, (L, 1, T, size // 4, size // 4), generator=g) * 2.0 - 1)
        self.size = size

    def _full(self) -> torch.Tensor:
        return self.patterns.repeat_interleave(4, -1).repeat_interleave(4, -2)

    def embed(self, clip, msg):
        signs = (2 * msg - 1).view(*msg.shape, 1, 1, 1, 1)
        return clip + self.strength * (signs * self._full()).sum(1) / self.L ** 0.5

    def extract(self, clip):
        centred = clip - clip.mean(dim=(2, 3, 4), keepdim=True)
        return torch.einsum("nctHW,lktHW->nl", centred, self._full())


def test_a_users_video_is_watermarked_clip_by_clip_and_read_back(tmp_path):
    """19 frames of 48×40 with sound, clips of T = 4 (the last one padded), a network size of 16 px: the
    output keeps every frame, the size and the audio bit for bit, and the message reads back exactly."""
    src = tmp_path / "holiday.mp4"
    make_video_with_audio(src, moving_frames(19, 48, seed=3)[:, :40])
    model, message = SpreadSpectrum(T=4, L=8, size=16), parse_message("a7", 8)
    out = tmp_path / "marked.mp4"
    summary = embed_video(model, 16, 4, src, out, message)
    marked = read_video(out)
    assert marked.frames.shape == (19, 40, 48, 3) and marked.has_audio
    assert audio_payload(out) == audio_payload(src)
    assert 15 < summary["psnr"] < 40
    found = extract_video(model, 16, 4, out)
    assert found["message"] == "a7" and found["clips"] == 5 and found["confidence"] > 0.5
    assert extract_video(model, 16, 4, src)["confidence"] < found["confidence"]

    with pytest.raises(ValueError, match=r"message must be \(1, 8\) bits"):
        embed_video(model, 16, 4, src, out, torch.zeros(1, 9))
    with pytest.raises(SourceError, match=r"holiday\.mp4 has 19 frame\(s\).*T = 32 frames"):
        embed_video(SpreadSpectrum(T=32, L=8, size=16), 16, 32, src, tmp_path / "new.mp4", message)
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(SourceError, match=r"notes\.mp4 is not a decodable video"):
        extract_video(model, 16, 4, tmp_path / "notes.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["holiday.mp4", "marked.mp4", "notes.mp4"]


def test_training_resumes_after_a_crash_exactly_where_it_stopped(mlflow_tmp, monkeypatch):
    from safetensors.torch import load_file

    from repflow.families.video.stages import train as train_stage
    from repflow.stage import run_stage

    params = parse_params(video_params(train={"epochs": 3}))
    shards = run_stage("video.prep", params, {}, mlflow_tmp / "prep")
    meta = read_manifest(shards)["meta"]
    assert not set(meta["train_videos"]) & set(meta["test_videos"]) and len(meta["test_videos"]) == 2
    whole = run_stage("video.train", params, {"shards": shards}, mlflow_tmp / "whole")
    real = train_stage.train_watermarker

    monkeypatch.setattr(train_stage, "train_watermarker", crash_after_first_epoch(real))
    with pytest.raises(KeyboardInterrupt):
        run_stage("video.train", params, {"shards": shards}, mlflow_tmp / "resumed")
    assert (mlflow_tmp / ".resumed.progress" / "watermarker.safetensors").is_file()
    monkeypatch.setattr(train_stage, "train_watermarker", real)
    resumed = run_stage("video.train", params, {"shards": shards}, mlflow_tmp / "resumed")
    a, b = (load_file(str(d / "watermarker.safetensors")) for d in (whole, resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class LocalResidual(Watermarker):
    """A residual that depends on each pixel's own value (0.1·sin(40·x)) and the message's first bit: a resized,
    stretched residual could not reproduce it pixel for pixel."""

    def __init__(self, T: int = 4, L: int = 8):
        super().__init__()
        self.T, self.L = T, L

    def embed(self, clip, msg):
        return clip + 0.1 * torch.sin(40 * clip) * (2 * msg[:, :1] - 1).view(-1, 1, 1, 1, 1)


def test_tiles_cover_the_frame_in_row_major_order_and_untile_inverts_them():
    clip = torch.rand(1, 3, 4, 40, 70)
    grid, real = tiles(clip, 16)
    assert grid.shape == (15, 3, 4, 16, 16)  # 3 rows × 5 columns, the last row and column padded
    assert torch.equal(grid[1], clip[0, :, :, :16, 16:32]) and torch.equal(grid[5], clip[0, :, :, 16:32, :16])
    assert torch.equal(grid[14][..., :8, :6], clip[0, :, :, 32:, 64:])
    assert torch.equal(grid[14][..., 8:, :6], clip[0, :, :, 39:, 64:].expand(-1, -1, 8, -1))  # edge repeated
    assert real[0] == 1 and real[4] == 6 / 16 and real[14] == 8 * 6 / 256
    assert torch.equal(untile(grid, 40, 70), clip)


def test_the_residual_is_computed_per_tile_at_full_resolution_and_scaled_by_strength():
    clip, msg = torch.rand(1, 3, 4, 40, 70), torch.ones(1, 8)
    model = LocalResidual()
    full = embed_tiled(model, clip, msg, 16, strength=1.0)
    checkerboard = tile_signs(40, 70, 16).view(3, 5).repeat_interleave(16, 0).repeat_interleave(16, 1)[:40, :70]
    assert checkerboard[0, 0] == 1 and checkerboard[0, 16] == -1 and checkerboard[16, 16] == 1
    torch.testing.assert_close(full - clip, 0.1 * torch.sin(40 * clip) * checkerboard)
    half = embed_tiled(model, clip, msg, 16, strength=0.5)
    torch.testing.assert_close(half - clip, 0.5 * (full - clip))


class ContentBias(Watermarker):
    """Reads the same logits from any content: a decoder's bias, with no mark at all."""

    def __init__(self, T: int = 4, L: int = 8):
        super().__init__()
        self.T, self.L = T, L

    def extract(self, clip):
        return torch.linspace(-2, 2, self.L).expand(len(clip), -1)


def test_a_content_bias_alike_in_every_tile_cancels_in_the_checkerboard(tmp_path):
    src = tmp_path / "plain.mp4"
    make_video_with_audio(src, moving_frames(8, 32, seed=1))
    assert extract_video(ContentBias(), 16, 4, src)["confidence"] == 0.0  # 2 × 2 tiles: +, −, −, +


def test_embed_prints_the_psnr_and_a_weaker_strength_is_less_visible(tmp_path, monkeypatch, capsys):
    """``repflow watermark embed`` through its command function (a spread-spectrum model standing in for the
    registry's): halving the strength raises PSNR by about 6 dB, and the printed line says both."""
    import argparse

    from repflow import tracking
    from repflow.families.video import commands

    src = tmp_path / "holiday.mp4"
    make_video_with_audio(src, moving_frames(8, 48, seed=4)[:, :32])
    model = SpreadSpectrum(T=4, L=8, size=16)
    monkeypatch.setattr(tracking, "configure", lambda *a, **k: None)
    monkeypatch.setattr(commands, "load_registered_watermarker",
                        lambda ref: (model, {"bits": 8, "size": 16, "frames": 4, "ref": "test@champion"}))
    psnr = {}
    for strength in (1.0, 0.5):
        args = argparse.Namespace(input=str(src), output=str(tmp_path / f"m{strength}.mp4"), message="a7", crf=18,
                                  strength=strength, model="x", workdir=str(tmp_path))
        assert commands._cmd_embed(args) == 0
        line = capsys.readouterr().out
        assert f"strength {strength:g}" in line
        psnr[strength] = float(line.split("PSNR ")[1].split(" dB")[0])
        assert extract_video(model, 16, 4, tmp_path / f"m{strength}.mp4")["message"] == "a7"
    assert 5 < psnr[0.5] - psnr[1.0] < 7
    with pytest.raises(ValueError, match=r"strength 0\.001 must be in 0\.01\.\.4"):
        embed_video(model, 16, 4, src, tmp_path / "x.mp4", parse_message("a7", 8), strength=0.001)
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.parametrize("value", ["0", "nan", "loud"])
def test_a_bad_strength_is_one_line_and_exit_2_before_any_work(tmp_path, value):
    r = subprocess.run([sys.executable, "-m", "repflow", "watermark", "embed", str(tmp_path / "in.mp4"),
                        str(tmp_path / "out.mp4"), "--message", "c0", "--strength", value],
                       env=child_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and f"argument --strength: {value!r}: must be a number in 0.01..4" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_the_video_flow_registers_a_watermarker_the_cli_uses(prefect_harness, ray_session, tmp_path, monkeypatch):
    import mlflow

    from repflow.families.video.flow import video_flow

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "params.yaml").write_text(yaml.safe_dump(video_params(), sort_keys=False))
    monkeypatch.chdir(ws)
    state = video_flow(params_file="params.yaml", overrides=[], workdir=str(ws), return_state=True)
    assert state.is_completed(), state
    metrics = state.result()["stages"]["evaluate"]
    expected = {"psnr", "ssim", "frame_psnr_std", "frame_psnr_min", "robust_bit_accuracy", "bit_accuracy/identity",
                "bit_accuracy/h264_crf28", "bit_accuracy/jpeg_approx", "macs_embed", "macs_extract", "clips_per_s"}
    assert expected <= set(metrics) and metrics["macs_embed"] > 0 and 0 <= metrics["bit_accuracy/h264_crf28"] <= 1
    assert (ws / "reports" / "video" / "evaluate" / "watermark.png").stat().st_size > 1000
    version = mlflow.MlflowClient().get_model_version_by_alias("repflow-video-watermarker", "champion")
    assert version.tags["repflow.bits"] == "8" and version.tags["repflow.family"] == "video"

    src = tmp_path / "user.mp4"
    make_video_with_audio(src, moving_frames(10, 32, seed=5))

    def watermark(*args):
        return subprocess.run([sys.executable, "-m", "repflow", "watermark", *map(str, args), "--workdir", str(ws)],
                              env=child_env(), capture_output=True, text=True, timeout=300)

    embedded = watermark("embed", src, tmp_path / "out.mp4", "--message", "3c")
    assert embedded.returncode == 0, embedded.stderr[-2000:]
    assert f"strength {DEFAULT_STRENGTH:g}: PSNR" in embedded.stdout
    assert read_video(tmp_path / "out.mp4").frames.shape == (10, 32, 32, 3)
    assert audio_payload(tmp_path / "out.mp4") == audio_payload(src)
    extracted = watermark("extract", tmp_path / "out.mp4", "--json")
    assert extracted.returncode == 0, extracted.stderr[-2000:]
    found = json.loads(extracted.stdout)
    assert len(found["message"]) == 2 and found["clips"] == 3 and 0 <= found["confidence"] <= 1
    too_long = watermark("embed", src, tmp_path / "x.mp4", "--message", "1ff")
    assert too_long.returncode == 2 and "needs 9 bits; this model carries L = 8" in too_long.stderr
    (tmp_path / "notes.mp4").write_text("not a video")
    broken = watermark("extract", tmp_path / "notes.mp4")
    assert broken.returncode == 2 and "is not a decodable video" in broken.stderr
    assert "Traceback" not in too_long.stderr + broken.stderr
    assert not (tmp_path / "x.mp4").exists() and not list(tmp_path.glob(".*.tmp"))
