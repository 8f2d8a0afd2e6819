import io
import json
import re
import tarfile

import numpy as np
import pytest
import soundfile
import torch

from repflow.manifest import OutputError, read_manifest, staged_output
from repflow.shards import MEMBER_TYPES, ShardReader, ShardSet, write_image_split, write_split
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


@pytest.mark.slow
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


# ---- typed members: every modality through write_split / ShardReader ----

AUDIO = {"type": "flac", "sample_rate": 8000}
LSB16 = 2.0 ** -15  # one step of 16-bit PCM on the [-1, 1] scale


def _write(folder, members, samples, shard_size=3, meta=None):
    meta = {**(meta or {}), "splits": {}}
    with staged_output(folder, stage="prep", meta=meta) as tmp:
        meta["splits"]["train"] = write_split(tmp, "train", samples, members, shard_size=shard_size)
    return ShardReader(folder)


def _waveforms(n, seed=0):
    """Mono (T,) and stereo (2,T) float waveforms of varying length, touching both ends of [-1, 1]."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        w = rng.uniform(-1, 1, (int(rng.integers(50, 400)),) if i % 2 else (2, int(rng.integers(50, 400))))
        w.flat[0], w.flat[-1] = 1.0, -1.0
        out.append(w.astype(np.float32 if i % 3 else np.float64))
    return out


def test_flac_round_trip_within_16_bit_quantisation(tmp_path):
    waves = _waveforms(7)
    reader = _write(tmp_path / "s", {"flac": AUDIO, "cls": "cls"},
                    ({"flac": w, "cls": i} for i, w in enumerate(waves)))
    assert len(reader.urls("train")) == 3 and reader.count("train") == 7
    assert reader.members("train")["flac"] == AUDIO
    got = list(reader.stream("train"))
    assert [s["cls"] for s in got] == list(range(7))
    for w, s in zip(waves, got):
        expected = w.reshape(1, -1) if w.ndim == 1 else w  # mono comes back as one channel: (1, T)
        assert s["flac"].dtype == np.float32 and s["flac"].shape == expected.shape
        assert np.abs(s["flac"] - expected).max() <= 2 * LSB16
        assert np.abs(s["flac"] - expected).max() > 0  # really went through 16-bit PCM
    with tarfile.open(reader.urls("train")[0]) as tar:
        raw = tar.extractfile(next(m for m in tar if m.name.endswith(".flac"))).read()
    assert soundfile.info(io.BytesIO(raw)).samplerate == AUDIO["sample_rate"]


@pytest.mark.parametrize("dtype", ["float16", "float64", "int64", "uint8", "bool", "complex64"])
def test_npy_round_trip_is_exact_and_keeps_dtype(tmp_path, dtype):
    rng = np.random.default_rng(1)
    arrays = [(rng.standard_normal(shape) * 100).astype(dtype) for shape in [(3, 4), (5,), (), (2, 0), (2, 3, 2)]]
    reader = _write(tmp_path / "s", {"latent.npy": "npy"}, ({"latent.npy": a} for a in arrays), shard_size=2)
    got = [s["latent.npy"] for s in reader.stream("train")]
    assert len(got) == len(arrays)
    for a, b in zip(arrays, got):
        assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b)


def test_tokens_round_trip_is_exact(tmp_path):
    i32 = np.iinfo(np.int32)
    seqs = [[5, 0, 7], [], [i32.min, i32.max], list(range(300)), np.array([3, 1], np.uint16)]
    reader = _write(tmp_path / "s", {"ids.npy": "tokens", "cls": "cls"},
                    ({"ids.npy": s, "cls": len(s)} for s in seqs))
    got = list(reader.stream("train"))
    for s, sample in zip(seqs, got):
        assert sample["ids.npy"].dtype == np.int32 and sample["ids.npy"].tolist() == list(s)
        assert sample["cls"] == len(s)
    with pytest.raises(ValueError, match=r"member 'ids.npy' \(type tokens\).*int32"):
        _write(tmp_path / "t", {"ids.npy": "tokens"}, [{"ids.npy": [i32.max + 1]}])
    with pytest.raises(ValueError, match=r"member 'ids.npy' \(type tokens\).*integer"):
        _write(tmp_path / "t", {"ids.npy": "tokens"}, [{"ids.npy": [0.5, 1.0]}])


def test_json_round_trip_is_exact(tmp_path):
    values = [{"anchor": 3, "view": [1, 2.5, None], "text": "h\u00e9llo \u2603"}, [], "plain", 42,
              {"nested": {"a": True}}]
    reader = _write(tmp_path / "s", {"json": "json"}, ({"json": v} for v in values), shard_size=2)
    assert [s["json"] for s in reader.stream("train")] == values


def test_image_extras_keep_their_types(tmp_path):
    """The generate stage's layout: png + cls + latent.npy + json, read back through ShardSet."""
    x, y = rng_images(9, c=3), np.arange(9) % 3
    z = np.random.default_rng(2).standard_normal((9, 4)).astype(np.float32)
    meta = {"classes": ["a", "b", "c"], "shape": [3, 12, 10], "splits": {}}
    with staged_output(tmp_path / "s", stage="generate", meta=meta) as tmp:
        meta["splits"]["views"] = write_image_split(tmp, "views", x, y, shard_size=4,
                                                    extras=({"latent.npy": z[i], "json": {"i": i}} for i in range(9)))
    ds = ShardSet(tmp_path / "s")
    assert {n: s["type"] for n, s in ds.members("views").items()} == \
        {"png": "png", "cls": "cls", "latent.npy": "npy", "json": "json"}
    xs, ys, latents, info = ds.load("views", extras=("latent.npy", "json"))
    assert torch.equal(xs, torch.from_numpy(x).permute(0, 3, 1, 2)) and ys.tolist() == y.tolist()
    assert np.array_equal(np.stack(latents), z) and [d["i"] for d in info] == list(range(9))
    with pytest.raises(OutputError, match=r"no member\(s\) \['nope'\]"):
        ds.load("views", extras=("nope",))


def test_manifest_without_member_declarations_reads_as_images(tmp_path):
    """Shard folders written before declarations existed still load, extras included."""
    x, y = rng_images(6), np.arange(6) % 2
    meta = {"classes": ["a", "b"], "shape": [1, 12, 10], "splits": {}}
    with staged_output(tmp_path / "s", stage="prep", meta=meta) as tmp:
        entry = write_image_split(tmp, "train", x, y, shard_size=4,
                                  extras=({"latent.npy": np.full(2, i)} for i in range(6)))
        del entry["members"]
        meta["splits"]["train"] = entry
    ds = ShardSet(tmp_path / "s")
    assert ds.members("train") is None
    xs, ys, latents = ds.load("train", extras=("latent.npy",))
    assert torch.equal(xs[:, 0], torch.from_numpy(x)) and ys.tolist() == y.tolist()
    assert [int(v[0]) for v in latents] == list(range(6))


def test_jpg_members_decode_as_jpeg(tmp_path):
    ramp = np.add.outer(np.arange(16), np.arange(16)).astype(np.uint8) * 7  # smooth: JPEG keeps it close
    reader = _write(tmp_path / "s", {"jpg": "jpg"}, [{"jpg": ramp}, {"jpg": np.stack([ramp] * 3, -1)}])
    grey, colour = (s["jpg"] for s in reader.stream("train"))
    assert grey.shape == (1, 16, 16) and colour.shape == (3, 16, 16) and grey.dtype == torch.uint8
    assert (grey[0].int() - torch.from_numpy(ramp).int()).abs().float().mean() < 4


def test_audio_folder_is_not_an_image_shard_set(tmp_path):
    _write(tmp_path / "s", {"flac": AUDIO}, [{"flac": np.zeros(10, np.float32)}])
    with pytest.raises(OutputError, match="not an image shard folder"):
        ShardSet(tmp_path / "s")


def _member_offset(shard, suffix):
    with tarfile.open(shard) as tar:
        m = next(m for m in tar if m.name.endswith(suffix))
        return m.offset_data, m.size


@pytest.mark.parametrize("member", ["flac", "latent.npy"])
def test_edited_audio_and_array_members_are_detected(tmp_path, member):
    members = {"flac": AUDIO, "latent.npy": "npy"}
    _write(tmp_path / "s", members,
           ({"flac": w.reshape(-1)[:100], "latent.npy": np.arange(50.0)} for w in _waveforms(6)))
    shard = tmp_path / "s" / "train-000001.tar"
    offset, size = _member_offset(shard, "." + member)
    data = bytearray(shard.read_bytes())
    data[offset + size // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(OutputError, match="train-000001.tar: sha256 does not match"):
        ShardReader(tmp_path / "s")


def test_unverified_read_of_a_broken_npy_member_names_shard_and_member(tmp_path):
    _write(tmp_path / "s", {"latent.npy": "npy"}, [{"latent.npy": np.arange(4)}] * 2)
    shard = tmp_path / "s" / "train-000000.tar"
    offset, _ = _member_offset(shard, ".npy")
    data = bytearray(shard.read_bytes())
    data[offset] ^= 0xFF  # the npy magic string
    shard.write_bytes(bytes(data))
    with pytest.raises(OutputError,
                       match=r"train-000000.tar: sample 'train00000000' member 'latent.npy' is not valid npy"):
        list(ShardReader(tmp_path / "s", verify=False).stream("train"))


def _npy_bytes(a):
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _flac_bytes(rate):
    buf = io.BytesIO()
    soundfile.write(buf, np.zeros(64, np.float32), rate, format="FLAC")
    return buf.getvalue()


def _jpeg_bytes():
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _declared_folder(folder, declared, payloads, **meta):
    """One shard holding ``payloads`` [(tar name, bytes)] under a manifest that declares ``declared``."""
    meta = {**meta, "splits": {"train": {"count": 1, "shards": ["train-000000.tar"], "members": declared}}}
    with staged_output(folder, stage="prep", meta=meta) as tmp:
        with tarfile.open(tmp / "train-000000.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
            for name, payload in payloads:
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return folder


@pytest.mark.parametrize("declared,payload,message", [
    (AUDIO, _npy_bytes(np.zeros(3)), "is not valid flac"),
    ({"type": "flac", "sample_rate": 16000}, _flac_bytes(8000), "sample rate 8000 Hz, manifest declares 16000 Hz"),
    ("npy", json.dumps([1, 2]).encode(), "is not valid npy"),
    ("tokens", _npy_bytes(np.zeros(3, np.float32)), "is not valid tokens"),
    ("png", _jpeg_bytes(), "is not valid png"),  # decoded by the declaration, not by sniffing the bytes
    ("json", b"\x89PNG", "is not valid json"),
])
def test_member_that_is_not_its_declared_type_is_an_error(tmp_path, declared, payload, message):
    folder = _declared_folder(tmp_path / "s", {"x.bin": declared, "cls": "cls"},
                              [("k0.cls", b"1"), ("k0.x.bin", payload)])
    with pytest.raises(OutputError, match=rf"train-000000.tar: sample 'k0' member 'x.bin' .*{message}"):
        list(ShardReader(folder).stream("train"))


def test_undeclared_and_missing_members_are_errors(tmp_path):
    folder = _declared_folder(tmp_path / "a", {"png": "png", "cls": "cls"},
                              [("k0.cls", b"1"), ("k0.extra.npy", _npy_bytes(np.zeros(2)))],
                              classes=["a"], shape=[1, 4, 4])
    with pytest.raises(OutputError, match=r"train-000000.tar: sample 'k0' has member 'extra.npy', which the manifest "
                                          r"does not declare \(declared: \['cls', 'png'\]\)"):
        ShardSet(folder).load("train")
    folder = _declared_folder(tmp_path / "b", {"json": "json", "cls": "cls"}, [("k0.cls", b"1")])
    with pytest.raises(OutputError, match=r"train-000000.tar: sample 'k0' lacks declared member\(s\) \['json'\]"):
        list(ShardReader(folder).stream("train"))


@pytest.mark.parametrize("name", ["../k0.cls", "/abs/k0.cls", "a/../../k0.cls"])
def test_member_paths_that_escape_are_refused(tmp_path, name):
    folder = _declared_folder(tmp_path / "s", {"cls": "cls"}, [(name, b"1")])
    with pytest.raises(OutputError, match=rf"train-000000.tar: tar member '{re.escape(name)}' escapes"):
        list(ShardReader(folder).stream("train"))


@pytest.mark.parametrize("kind", ["wav", "pyd", "pickle", "pth", None])
def test_unknown_member_type_is_refused_at_write_and_in_a_manifest(tmp_path, kind):
    allowed = re.escape(str(sorted(MEMBER_TYPES)))
    with pytest.raises(ValueError,
                       match=rf"member 'x': unknown type {re.escape(repr(kind))}; allowed types: {allowed}"):
        write_split(tmp_path, "train", [{"x": b""}], {"x": kind}, shard_size=4)
    assert not list(tmp_path.glob("*.tar"))
    folder = _declared_folder(tmp_path / "s", {"x": kind}, [("k0.x", b"\x80\x04K\x01.")])
    with pytest.raises(OutputError, match=r"manifest.json: split 'train': member 'x': unknown type"):
        ShardReader(folder)


def test_writer_checks_samples_against_the_declaration(tmp_path):
    with pytest.raises(ValueError, match=r"train sample 1 has members \['cls', 'json'\], declared \['cls'\]"):
        write_split(tmp_path, "train", [{"cls": 0}, {"cls": 1, "json": {}}], {"cls": "cls"}, shard_size=4)
    with pytest.raises(ValueError, match=r"member 'flac' \(type flac\): samples must be finite and within \[-1, 1\]"):
        write_split(tmp_path, "train", [{"flac": np.full(8, 1.5)}], {"flac": AUDIO}, shard_size=4)
    with pytest.raises(ValueError, match=r"member 'png' \(type png\): needs uint8"):
        write_split(tmp_path, "train", [{"png": np.zeros((4, 4))}], {"png": "png"}, shard_size=4)
    with pytest.raises(ValueError, match=r"member 'a.npy' \(type npy\): .*pickle"):
        write_split(tmp_path, "train", [{"a.npy": np.array([{}], dtype=object)}], {"a.npy": "npy"}, shard_size=4)
    with pytest.raises(ValueError, match=r"'flac' takes parameters \['sample_rate'\], got \[\]"):
        write_split(tmp_path, "train", [], {"flac": "flac"}, shard_size=4)
    with pytest.raises(ValueError, match=r"member name '\.\./x'"):
        write_split(tmp_path, "train", [], {"../x": "npy"}, shard_size=4)


@pytest.mark.parametrize("channels", [None, 3])
def test_raw_image_shards_read_back_the_png_shards_images_without_a_decode(tmp_path, channels):
    x, y = rng_images(20, c=channels), np.arange(20) % 3
    png = ShardSet(make_set(tmp_path / "png", x, y))
    meta = {"classes": png.classes, "shape": list(png.shape), "splits": {}}
    with staged_output(tmp_path / "raw", stage="prep", meta=meta) as tmp:
        meta["splits"]["train"] = write_image_split(tmp, "train", x, y, shard_size=7, image_format="raw")
    raw = ShardSet(tmp_path / "raw")
    assert raw.members("train")["raw"] == {"type": "raw", "dtype": "uint8", "shape": list(png.shape)}
    for a, b in zip(raw.load("train"), png.load("train")):
        assert torch.equal(a, b)
    streamed = [img for batch, _ in raw.loader("train", batch_size=8) for img in batch]
    assert len(streamed) == 20 and streamed[0].dtype == torch.uint8 and tuple(streamed[0].shape) == png.shape


def test_raw_members_check_their_declaration(tmp_path):
    spec = {"type": "raw", "dtype": "float32", "shape": [2, 3]}
    with pytest.raises(ValueError, match=r"member 'a' \(type raw\): needs float32 \(2, 3\) as declared, got float64"):
        write_split(tmp_path, "train", [{"a": np.zeros((2, 3))}], {"a": spec}, shard_size=4)
    with pytest.raises(ValueError, match=r"member 'a': dtype 'object' unknown; allowed: \['uint8'"):
        write_split(tmp_path, "train", [], {"a": {**spec, "dtype": "object"}}, shard_size=4)
    with pytest.raises(ValueError, match=r"member 'a': shape must be a list of positive ints, got \[2, 0\]"):
        write_split(tmp_path, "train", [], {"a": {**spec, "shape": [2, 0]}}, shard_size=4)
    with pytest.raises(ValueError, match=r"image_format 'bmp' unknown; allowed: \['png', 'raw'\]"):
        write_image_split(tmp_path, "train", rng_images(2), np.zeros(2, int), shard_size=4, image_format="bmp")
    folder = _declared_folder(tmp_path / "s", {"a": spec}, [("k0.a", bytes(20))])
    with pytest.raises(OutputError, match=r"member 'a' is not valid raw data .*20 bytes, float32 \(2, 3\) needs 24"):
        list(ShardReader(folder).stream("train"))
