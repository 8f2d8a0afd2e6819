"""Training from streamed shards (issue 34): the image train loop reads batches through the shard pipeline,
shard folders open from URLs, and every stage's summary carries its peak resident memory."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from repflow.config import ParamsError
from repflow.families.image.contrastive import train_contrastive
from repflow.families.image.models import ProjectionHead, build_encoder
from repflow.families.image.stages._splits import ShardImages
from repflow.family import parse_params
from repflow.manifest import OutputError, staged_output
from repflow.memory import PeakMemory
from repflow.shards import ShardSet, write_image_split
from tests.conftest import rng_images, tiny_params

REPO = Path(__file__).resolve().parents[1]


def make_set(folder, images, labels, shard_size=7, image_format="png"):
    meta = {"classes": [str(c) for c in range(int(labels.max()) + 1)], "mean": [0.5], "std": [0.25],
            "shape": [1 if images.ndim == 3 else images.shape[3], images.shape[1], images.shape[2]], "splits": {}}
    with staged_output(folder, stage="prep", meta=meta) as tmp:
        meta["splits"]["train"] = write_image_split(tmp, "train", images, labels, shard_size=shard_size,
                                                    image_format=image_format)
    return folder


def keys_of(batches):
    """Each streamed image identified by its first 8 pixels."""
    return [tuple(img.flatten()[:8].tolist()) for x, _ in batches for img in x]


def test_streamed_epoch_is_a_seeded_permutation(tmp_path):
    x, y = rng_images(30), np.arange(30) % 3
    data = ShardSet(make_set(tmp_path / "s", x, y))
    stream = ShardImages(data, "train", shuffle_buffer=64, seed=3)
    every = sorted(tuple(img.flatten()[:8].tolist()) for img in torch.from_numpy(x))
    epoch0 = keys_of(stream.batches(0, 8, drop_last=False))
    assert sorted(epoch0) == every and len(stream) == 30
    assert keys_of(stream.batches(0, 8, drop_last=False)) == epoch0  # same (seed, epoch): same order
    assert keys_of(stream.batches(1, 8, drop_last=False)) != epoch0
    assert keys_of(ShardImages(data, "train", shuffle_buffer=64, seed=4).batches(0, 8, drop_last=False)) != epoch0
    dropped = list(stream.batches(0, 8, drop_last=True))
    assert [len(b[0]) for b in dropped] == [8, 8, 8] and keys_of(dropped) == epoch0[:24]
    assert all(lab is None for _, lab in dropped)
    labelled = list(ShardImages(data, "train", shuffle_buffer=64, seed=3, labels=True).batches(0, 8, drop_last=True))
    by_key = {tuple(img.flatten()[:8].tolist()): int(lab) for img, lab in zip(torch.from_numpy(x), y)}
    assert [int(v) for _, lab in labelled for v in lab] == [by_key[k] for k in keys_of(labelled)]
    assert torch.equal(stream.all_labels(), torch.from_numpy(y))
    assert torch.equal(stream.take(torch.tensor([5, 0, 29])), torch.from_numpy(x[[5, 0, 29]]).unsqueeze(1))


def _train(images, seed=0, **kw):
    torch.manual_seed(0)
    enc = build_encoder({"name": "small_cnn", "in_channels": 1, "width": 4})
    head = ProjectionHead(enc.out_dim, 8)
    history = train_contrastive(enc, head, images, epochs=2, batch_size=8, lr=1e-3, weight_decay=0.0,
                                temperature=0.5, augment={}, device=torch.device("cpu"), seed=seed, **kw)
    return history, torch.cat([p.detach().flatten() for p in enc.parameters()])


def test_streamed_training_is_deterministic_and_carries_labels(tmp_path):
    torch.set_num_threads(1)
    x, y = rng_images(26), np.arange(26) % 3
    data = ShardSet(make_set(tmp_path / "s", x, y))
    h1, w1 = _train(ShardImages(data, "train", shuffle_buffer=100, seed=0))
    h2, w2 = _train(ShardImages(data, "train", shuffle_buffer=100, seed=0))
    assert h1 == [dict(h, seconds=h1[i]["seconds"]) for i, h in enumerate(h2)] and torch.equal(w1, w2)
    assert [(h["images"], h["trained"], h["steps"]) for h in h1] == [(26, 24, 3)] * 2  # the ragged 2 dropped
    _, w3 = _train(ShardImages(data, "train", shuffle_buffer=100, seed=1))
    assert not torch.equal(w1, w3)
    h_every, _ = _train(ShardImages(data, "train", shuffle_buffer=100, seed=0), use_every_image=True)
    assert [h["trained"] for h in h_every] == [26, 26]

    class Distinct(ShardImages):  # every label distinct: SupCon is NT-Xent (a direct identity)
        def batches(self, epoch, batch_size, *, drop_last):
            for images, _ in super().batches(epoch, batch_size, drop_last=drop_last):
                yield images, torch.arange(len(images))

    h_sup, w_sup = _train(Distinct(data, "train", shuffle_buffer=100, seed=0))
    assert [h["loss"] for h in h_sup] == pytest.approx([h["loss"] for h in h1], rel=1e-4)

    class Same(ShardImages):  # one label for all: SupCon has other positives, the loss differs
        def batches(self, epoch, batch_size, *, drop_last):
            for images, _ in super().batches(epoch, batch_size, drop_last=drop_last):
                yield images, torch.zeros(len(images), dtype=torch.int64)

    assert _train(Same(data, "train", shuffle_buffer=100, seed=0))[0][0]["loss"] != h1[0]["loss"]
    with pytest.raises(ValueError, match="no random access"):
        _train(ShardImages(data, "train", shuffle_buffer=100, seed=0), labels=torch.from_numpy(y))


def test_resumed_streamed_training_sees_the_batches_of_an_uninterrupted_run(tmp_path):
    """A run killed after epoch 1 and resumed from its checkpoint (models + optimizer) ends where an
    uninterrupted run ends: epoch 2's stream order depends on (seed, epoch) only."""
    import copy

    torch.set_num_threads(1)
    data = ShardSet(make_set(tmp_path / "s", rng_images(24), np.arange(24) % 3))
    _, whole = _train(ShardImages(data, "train", shuffle_buffer=100, seed=0))
    saved = {}

    def keep(epoch, stats, opt):
        saved["opt"] = copy.deepcopy(opt.state_dict())

    torch.manual_seed(0)
    enc = build_encoder({"name": "small_cnn", "in_channels": 1, "width": 4})
    head = ProjectionHead(enc.out_dim, 8)
    kw = dict(batch_size=8, lr=1e-3, weight_decay=0.0, temperature=0.5, augment={}, device=torch.device("cpu"),
              seed=0)
    train_contrastive(enc, head, ShardImages(data, "train", shuffle_buffer=100, seed=0), epochs=1, on_epoch=keep,
                      **kw)
    train_contrastive(enc, head, ShardImages(data, "train", shuffle_buffer=100, seed=0), epochs=2, start_epoch=1,
                      optimizer_state=saved["opt"], **kw)
    assert torch.equal(torch.cat([p.detach().flatten() for p in enc.parameters()]), whole)


def test_shards_open_from_file_and_pipe_urls(tmp_path):
    x, y = rng_images(20), np.arange(20) % 2
    folder = make_set(tmp_path / "s", x, y)
    local = ShardSet(folder).load("train")
    for url in (folder.as_uri(), f"pipe:cat {folder}", f"pipe:cat {folder}/{{name}}"):
        remote = ShardSet(url)
        assert remote.url("train-000000.tar").endswith("train-000000.tar") and remote.shape == (1, 12, 10)
        got = remote.load("train")
        assert torch.equal(got[0], local[0]) and torch.equal(got[1], local[1])
        assert torch.equal(remote.labels("train"), local[1])
    streamed = ShardImages(ShardSet(f"pipe:cat {folder}"), "train", shuffle_buffer=50, seed=0)
    assert sorted(keys_of(streamed.batches(0, 6, drop_last=False))) == \
        sorted(tuple(img.flatten()[:8].tolist()) for img in torch.from_numpy(x))

    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    shard = copy / "train-000001.tar"
    raw = bytearray(shard.read_bytes())
    raw[600] ^= 1
    shard.write_bytes(bytes(raw))
    tampered = ShardSet(f"pipe:cat {copy}")  # a remote folder's shards are checked as they are streamed
    with pytest.raises(OutputError, match="train-000001.tar: .* sha256 does not match"):
        tampered.load("train")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["meta"]["classes"] = ["a", "b"]
    manifest["files"]["train-000000.tar"]["sha256"] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(OutputError, match="digest does not match"):
        ShardSet(f"pipe:cat {copy}")
    with pytest.raises(OutputError, match="cannot read its manifest.json"):
        ShardSet(f"pipe:cat {tmp_path}/missing")


def test_stream_always_refuses_what_needs_the_images_in_memory():
    assert parse_params(tiny_params(train={"stream": "always"})).train.stream == "always"
    with pytest.raises(ParamsError, match="train.stream = 'always'.*select.method = 'rcs'"):
        parse_params(tiny_params(train={"stream": "always"}, select={"method": "rcs", "warmup_epochs": 1}))
    with pytest.raises(ParamsError, match="train.stream = 'always'.*train.data = 'both'"):
        parse_params(tiny_params(train={"stream": "always", "data": "both"}))


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's /proc/self/clear_refs")
def test_peak_memory_of_an_outer_scope_survives_an_inner_reset():
    outer = PeakMemory()
    base = outer.start()
    block = bytearray(96 << 20)  # touched: zero-filled pages of a bytearray are written
    block[::4096] = b"\1" * len(block[::4096])
    del block
    inner = PeakMemory()
    inner.start()
    assert inner.stop() < base + 48
    assert outer.stop() > base + 80


@pytest.mark.slow
def test_streamed_select_and_train_stages(tiny_shards, tmp_path, mlflow_tmp):
    """The default flow streams: select and train read the split batch by batch, the same params give the same
    encoder, and every stage's summary has its peak resident memory."""
    from repflow.stage import read_summary, run_stage

    p = parse_params(tiny_params(train={"epochs": 1, "shuffle_buffer": 50}))
    inputs = {"shards": tiny_shards, "views": None}
    encoders = []
    for run in ("a", "b"):
        sel = run_stage("image.select", p, inputs, tmp_path / run / "select")
        out = run_stage("image.train", p, {**inputs, "selection": sel}, tmp_path / run / "train")
        encoders.append((out / "encoder.safetensors").read_bytes())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["meta"]["streamed"] is True and manifest["meta"]["shuffle_buffer"] == 50
    assert encoders[0] == encoders[1]
    hist = json.loads((out / "history.json").read_text())["history"]
    assert [(h["images"], h["trained"]) for h in hist] == [(190, 128)]
    for folder in (sel, out):
        assert 50 < read_summary(folder).metrics["peak_rss_mb"] < 20_000


_CAPPED = textwrap.dedent("""
    import resource, sys, torch
    from pathlib import Path
    torch.set_num_threads(1)
    from repflow.families.image.contrastive import train_contrastive
    from repflow.families.image.models import ProjectionHead, build_encoder
    from repflow.families.image.stages._splits import ShardImages
    from repflow.shards import ShardSet

    def status(field):
        line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field + ":"))
        return int(line.split()[1]) // 1024

    big, small, mode, cap_mb = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    torch.manual_seed(0)
    encoder = build_encoder({"name": "small_cnn_s2", "in_channels": 3, "width": 4})
    head = ProjectionHead(encoder.out_dim, 8)
    kw = dict(epochs=1, batch_size=64, lr=1e-3, weight_decay=0.0, temperature=0.5, augment={},
              device=torch.device("cpu"), seed=0)
    train_contrastive(encoder, head, ShardImages(ShardSet(small), "train", shuffle_buffer=500, seed=0), **kw)
    base = status("VmData")
    resource.setrlimit(resource.RLIMIT_DATA, ((base + cap_mb) << 20, resource.RLIM_INFINITY))
    data = ShardSet(big)
    images = data.load("train")[0] if mode == "load" else ShardImages(data, "train", shuffle_buffer=500, seed=0)
    history = train_contrastive(encoder, head, images, **kw)
    print({"trained": history[-1]["trained"], "data_growth_mb": status("VmData") - base})
""")


@pytest.mark.slow
def test_training_streams_a_set_three_times_larger_than_its_memory_cap(tmp_path):
    """The issue's test: 72 MiB of training images (raw 3x48x48 uint8 shards) streamed under a cap of 24 MiB
    of private memory above what the process held after one streamed epoch of a 7 MiB set (models, optimizer,
    a step's activations, the shuffle buffer's 500 samples, torch's caches: what does not grow with the data).
    The cap is RLIMIT_DATA (heap and anonymous mappings: what a copy of the split would need); torch's own
    address space, shared libraries and the read-only shard mappings are not capped, since RLIMIT_AS would
    count them. glibc is told to keep freed memory in its heap, so that the baseline holds the working
    memory the first epoch reached instead of what it returned. The streamed epoch finishes (measured growth:
    2-6 MiB); loading the same split under the same cap fails, so the cap binds."""
    n, cap_mb = 10_944, 24  # 10944 * 6912 bytes = 72.1 MiB >= 3 x 24 MiB
    rng = np.random.default_rng(0)
    big = make_set(tmp_path / "big", rng.integers(0, 256, (n, 48, 48, 3), dtype=np.uint8), np.arange(n) % 10,
                   shard_size=1024, image_format="raw")
    small = make_set(tmp_path / "small", rng.integers(0, 256, (1024, 48, 48, 3), dtype=np.uint8),
                     np.arange(1024) % 10, shard_size=1024, image_format="raw")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "REPFLOW_PROGRESS": "0", "MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}

    def capped(mode):
        return subprocess.run([sys.executable, "-c", _CAPPED, str(big), str(small), mode, str(cap_mb)], env=env,
                              capture_output=True, text=True, timeout=120)

    streamed = capped("stream")
    assert streamed.returncode == 0, streamed.stderr[-2000:]
    result = eval(streamed.stdout.strip().splitlines()[-1])
    assert result["trained"] == n - n % 64 and result["data_growth_mb"] < cap_mb
    loaded = capped("load")
    assert loaded.returncode != 0 and ("can't allocate memory" in loaded.stderr or "MemoryError" in loaded.stderr)
