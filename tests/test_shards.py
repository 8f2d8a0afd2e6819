import io
import json
import tarfile

import numpy as np
import pytest
import torch

from repflow.manifest import OutputError, read_manifest, staged_output
from repflow.shards import ShardSet, write_image_split
from tests.conftest import rng_images


def make_set(folder, images, labels, shard_size=7, classes=None):
    meta = {"classes": classes or [str(c) for c in range(int(labels.max()) + 1)],
            "shape": [1 if images.ndim == 3 else images.shape[3], images.shape[1], images.shape[2]], "splits": {}}
    with staged_output(folder, stage="prep", meta=meta) as tmp:
        meta["splits"]["train"] = write_image_split(tmp, "train", images, labels, shard_size=shard_size)
    return folder


@pytest.mark.parametrize("channels", [None, 3])
def test_round_trip_grey_and_colour(tmp_path, channels):
    x = rng_images(30, c=channels)
    y = np.arange(30) % 4
    ds = ShardSet(make_set(tmp_path / "s", x, y))
    assert ds.shape == ((1 if channels is None else 3), 12, 10)
    assert len(ds.urls("train")) == 5  # ceil(30 / 7)
    assert ds.meta["splits"]["train"]["per_class"] == {"0": 8, "1": 8, "2": 7, "3": 7}
    xs, ys = ds.load("train")
    expected = torch.from_numpy(x).unsqueeze(1) if channels is None else torch.from_numpy(x).permute(0, 3, 1, 2)
    assert torch.equal(xs, expected) and torch.equal(ys, torch.from_numpy(y))


def test_streaming_with_workers_sees_each_sample_once(tmp_path):
    x, y = rng_images(40), np.arange(40) % 5
    ds = ShardSet(make_set(tmp_path / "s", x, y, shard_size=10))
    seen = []
    for xb, yb in ds.loader("train", batch_size=8, num_workers=2, shuffle_buffer=16, seed=1):
        seen.extend(xb.reshape(len(xb), -1)[:, :4].tolist())
    assert len(seen) == 40
    assert sorted(map(tuple, seen)) == sorted(map(tuple, torch.from_numpy(x).reshape(40, -1)[:, :4].tolist()))


def test_more_workers_than_shards_is_not_an_error(tmp_path):
    ds = ShardSet(make_set(tmp_path / "s", rng_images(5), np.zeros(5, int), shard_size=100))
    assert sum(len(b[0]) for b in ds.loader("train", batch_size=2, num_workers=4)) == 5


def test_edited_shard_is_detected(tmp_path):
    folder = make_set(tmp_path / "s", rng_images(20), np.zeros(20, int))
    shard = folder / "train-000001.tar"
    data = bytearray(shard.read_bytes())
    data[600] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(OutputError, match="train-000001.tar: sha256 does not match"):
        ShardSet(folder)


def test_truncated_and_missing_shards_are_detected(tmp_path):
    folder = make_set(tmp_path / "s", rng_images(20), np.zeros(20, int))
    shard = folder / "train-000000.tar"
    shard.write_bytes(shard.read_bytes()[:1000])
    with pytest.raises(OutputError, match="truncated or edited"):
        ShardSet(folder)
    shard.unlink()
    with pytest.raises(OutputError, match="train-000000.tar: listed in .* but missing"):
        ShardSet(folder)


def test_edited_manifest_is_detected(tmp_path):
    folder = make_set(tmp_path / "s", rng_images(10), np.zeros(10, int))
    m = json.loads((folder / "manifest.json").read_text())
    m["stage_key"] = "forged"
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(OutputError, match="digest does not match"):
        read_manifest(folder)


def test_missing_manifest_names_the_folder(tmp_path):
    (tmp_path / "half").mkdir()
    with pytest.raises(OutputError, match="half/manifest.json: missing"):
        ShardSet(tmp_path / "half")


def test_failed_write_leaves_previous_output_intact(tmp_path):
    folder = make_set(tmp_path / "s", rng_images(10), np.zeros(10, int))
    before = (folder / "manifest.json").read_text()
    with pytest.raises(RuntimeError):
        with staged_output(folder, stage="prep") as tmp:
            (tmp / "partial.tar").write_bytes(b"x")
            raise RuntimeError("crash mid-write")
    assert (folder / "manifest.json").read_text() == before
    assert not (folder / "partial.tar").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # no temporary sibling left behind
    ShardSet(folder)


def test_leftovers_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    """SIGKILL leaves the temporary sibling behind; the next write of that output clears it (and only it)."""
    dead = tmp_path / ".s.tmp-deadbeef"
    dead.mkdir()
    (dead / "half.tar").write_bytes(b"x")
    other = tmp_path / ".t.tmp-deadbeef"
    other.mkdir()
    make_set(tmp_path / "s", rng_images(4), np.zeros(4, int))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".t.tmp-deadbeef", "s"]


def test_pickle_members_are_refused(tmp_path):
    folder = tmp_path / "s"
    meta = {"classes": ["a"], "shape": [1, 2, 2], "splits": {"train": {"count": 1, "per_class": {"0": 1},
                                                                        "shards": ["train-000000.tar"]}}}
    with staged_output(folder, stage="prep", meta=meta) as tmp:
        with tarfile.open(tmp / "train-000000.tar", "w") as tar:
            for name, payload in [("k0.cls", b"0"), ("k0.pyd", b"\x80\x04K\x01.")]:
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(OutputError, match=r"member 'pyd'; allowed extensions"):
        ShardSet(folder).load("train")


def test_split_names_with_dots_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="may not contain"):
        write_image_split(tmp_path, "train.v2", rng_images(2), np.zeros(2, int), shard_size=4)


def test_same_inputs_give_byte_identical_shards(tmp_path):
    x, y = rng_images(12), np.arange(12) % 3
    a = ShardSet(make_set(tmp_path / "a", x, y)).manifest["files"]
    b = ShardSet(make_set(tmp_path / "b", x, y)).manifest["files"]
    assert a == b


def _raw_shard_set(folder, members, fmt=tarfile.USTAR_FORMAT):
    """A shard folder whose single tar holds ``members`` [(TarInfo, payload)] written by Python's tarfile."""
    meta = {"classes": ["a"], "shape": [1, 2, 2], "splits": {"train": {"count": 1, "per_class": {"0": 1},
                                                                        "shards": ["train-000000.tar"]}}}
    with staged_output(folder, stage="prep", meta=meta) as tmp:
        with tarfile.open(tmp / "train-000000.tar", "w", format=fmt) as tar:
            for info, payload in members:
                tar.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return ShardSet(folder)


def _member(name, payload=b"", kind=tarfile.REGTYPE):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(payload) if kind == tarfile.REGTYPE else 0
    return info, (payload if kind == tarfile.REGTYPE else None)


def test_reader_accepts_pax_headers_from_other_writers(tmp_path):
    png = io.BytesIO()
    from PIL import Image
    Image.fromarray(np.full((2, 2), 7, np.uint8)).save(png, format="PNG")
    long_key = "cl\u00e4ss/" + "k" * 120  # non-ASCII and > 100 characters: needs a PAX path record
    ds = _raw_shard_set(tmp_path / "s", [_member(f"{long_key}.png", png.getvalue()), _member(f"{long_key}.cls", b"0")],
                        fmt=tarfile.PAX_FORMAT)
    x, y = ds.load("train")
    assert x.shape == (1, 1, 2, 2) and int(x.max()) == 7 and y.tolist() == [0]


def test_links_inside_shards_are_refused(tmp_path):
    ds = _raw_shard_set(tmp_path / "s", [_member("k0.cls", b"0"), _member("k0.png", kind=tarfile.SYMTYPE)])
    with pytest.raises(OutputError, match=r"train-000000.tar: tar member 'k0.png' has type b'2'"):
        ds.load("train")
