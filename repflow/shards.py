"""The project's one WebDataset writer and reader, for every modality.

Layout of a shard folder: ``<split>-000000.tar ...`` plus ``manifest.json`` (see
:mod:`repflow.manifest`). One sample = ``__key__`` (no dots: WebDataset groups members at the first
dot) + typed members. The manifest's ``meta["splits"][split]["members"]`` declares each member's type,
and the reader decodes by that declaration, never by the member's extension, so a file that is not what
the manifest says is an error instead of a silent misread. Image folders also keep ``shape`` ([C, H, W])
and ``classes`` in ``meta``, so later stages read image geometry from it instead of assuming a dataset.

A reader opens a local folder, or a URL that WebDataset's ``gopen`` reads (``file://``, ``http(s)://``,
``pipe:CMD``, ``gs://`` ...; S3 through ``pipe:aws s3 cp s3://bucket/dir/{name} -``). A local folder is
verified against its manifest when opened; a remote one has its manifest's digest checked when opened and
each shard's size and sha256 checked when it is streamed, before any of its samples is yielded.
"""
from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
import mmap
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import torch
import webdataset as wds
from PIL import Image

from repflow.manifest import MANIFEST, SCHEMA, OutputError, manifest_digest, read_manifest
from repflow.progress import progress

__all__ = ["MEMBER_TYPES", "write_split", "write_image_split", "ShardReader", "ShardSet"]


def _shard_pattern(folder: Path, split: str) -> str:
    return str(folder / f"{split}-%06d.tar")


def _image_codec(fmt: str, channels: tuple[int, ...], decoder: str, **opts: Any) -> tuple[Callable, Callable]:
    """(encode, decode) for one image format; ``decoder`` names torchvision.io's function, imported on first
    decode: importing torchvision pulls in torch._dynamo (~4 CPU-s), which a process reading raw shards, or
    none, should not pay."""
    def encode(value: Any, spec: dict) -> bytes:
        a = np.asarray(value)
        if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in channels):
            raise ValueError(f"needs uint8 (H,W) or (H,W,C) with C in {channels}, got {a.dtype} {a.shape}")
        buf = io.BytesIO()
        Image.fromarray(a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a).save(buf, format=fmt, **opts)
        return buf.getvalue()

    def decode_(raw: bytes, spec: dict) -> torch.Tensor:
        from torchvision import io as tvio

        return getattr(tvio, decoder)(torch.frombuffer(bytearray(raw), dtype=torch.uint8), tvio.ImageReadMode.UNCHANGED)

    return encode, decode_


def _encode_flac(value: Any, spec: dict) -> bytes:
    import soundfile

    a = np.asarray(value)
    if a.dtype.kind != "f" or a.ndim not in (1, 2):
        raise ValueError(f"needs a float waveform (T,) or (C,T), got {a.dtype} {a.shape}")
    if a.size and (not np.isfinite(a).all() or np.abs(a).max() > 1):
        raise ValueError("samples must be finite and within [-1, 1] (16-bit FLAC would clip them)")
    buf = io.BytesIO()
    soundfile.write(buf, a.T if a.ndim == 2 else a, spec["sample_rate"], format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def _decode_flac(raw: bytes, spec: dict) -> np.ndarray:
    import soundfile

    with soundfile.SoundFile(io.BytesIO(raw)) as f:
        if f.format != "FLAC":
            raise ValueError(f"{f.format} data, not FLAC")
        if f.samplerate != spec["sample_rate"]:
            raise ValueError(f"sample rate {f.samplerate} Hz, manifest declares {spec['sample_rate']} Hz")
        return np.ascontiguousarray(f.read(dtype="float32", always_2d=True).T)


def _save_npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _load_npy(raw: bytes) -> np.ndarray:
    return np.lib.format.read_array(io.BytesIO(raw), allow_pickle=False)


def _encode_npy(value: Any, spec: dict) -> bytes:
    a = np.asarray(value)
    if a.dtype.hasobject:
        raise ValueError(f"dtype {a.dtype} holds Python objects, which need pickle")
    return _save_npy(a)


_I32 = np.iinfo(np.int32)


def _encode_tokens(value: Any, spec: dict) -> bytes:
    a = np.asarray(value)
    if a.size == 0:
        a = a.astype(np.int32)
    if a.ndim != 1 or a.dtype.kind not in "iu":
        raise ValueError(f"needs a 1-D integer sequence, got {a.dtype} {a.shape}")
    if a.size and (a.min() < _I32.min or a.max() > _I32.max):
        raise ValueError("token ids must fit in int32")
    return _save_npy(a.astype(np.int32))


def _decode_tokens(raw: bytes, spec: dict) -> np.ndarray:
    a = _load_npy(raw)
    if a.dtype != np.int32 or a.ndim != 1:
        raise ValueError(f"holds {a.dtype} {a.shape}, tokens are int32 (T,)")
    return a


_RAW_DTYPES = ("uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64", "bool")
_TORCH_DTYPES = {name: getattr(torch, name) for name in _RAW_DTYPES}


def _encode_raw(value: Any, spec: dict) -> bytes:
    a = np.asarray(value)
    if a.dtype != np.dtype(spec["dtype"]) or list(a.shape) != list(spec["shape"]):
        raise ValueError(f"needs {spec['dtype']} {tuple(spec['shape'])} as declared, got {a.dtype} {a.shape}")
    return np.ascontiguousarray(a).tobytes()


def _decode_raw(raw: bytes, spec: dict) -> torch.Tensor:
    dtype = _TORCH_DTYPES[spec["dtype"]]
    expected = math.prod(spec["shape"]) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(f"{len(raw)} bytes, {spec['dtype']} {tuple(spec['shape'])} needs {expected}")
    return torch.frombuffer(bytearray(raw), dtype=dtype).view(spec["shape"])


def _encode_cls(value: Any, spec: dict) -> bytes:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"needs an int class label, got {type(value).__name__}")
    return str(int(value)).encode("ascii")


_CODECS: dict[str, tuple[Callable[[Any, dict], bytes], Callable[[bytes, dict], Any]]] = {
    "png": _image_codec("PNG", (1, 3, 4), "decode_png"),
    "jpg": _image_codec("JPEG", (1, 3), "decode_jpeg", quality=95),
    "flac": (_encode_flac, _decode_flac),
    "npy": (_encode_npy, lambda raw, spec: _load_npy(raw)),
    "raw": (_encode_raw, _decode_raw),
    "tokens": (_encode_tokens, _decode_tokens),
    "json": (lambda value, spec: json.dumps(value).encode("utf-8"), lambda raw, spec: json.loads(raw)),
    "cls": (_encode_cls, lambda raw, spec: int(raw)),
}

MEMBER_TYPES = frozenset(_CODECS)
"""Member types a split may declare, and what a sample holds for each when written → when read:

png / jpg: uint8 (H,W) or (H,W,C) array → uint8 (C,H,W) tensor (jpg is lossy, quality 95; png takes C=4 too).
flac: float waveform (T,) or (C,T) in [-1, 1] → float32 (C,T) array; declares ``sample_rate`` (Hz); 16-bit.
npy: any non-object array → the same array, dtype and shape kept.
raw: array of the declared ``dtype`` and ``shape`` → a tensor of them; the bytes alone (C order), so reading
     needs no decode at all (images: uint8 (C,H,W), the fastest image member; png / jpg save disk).
tokens: int sequence (T,) → int32 (T,) array.   json: JSON value → the same value.   cls: int → int.
No type carries pickle (pyd, pth, pickle), so reading a shard never runs code from it.
"""

_PARAMS = {"flac": {"sample_rate"}, "raw": {"dtype", "shape"}}
_IMAGE_TYPES = ("png", "jpg", "raw")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9][A-Za-z0-9_-]*)*")
# manifests written before member declarations existed: images with labels and optional json / npy extras
_LEGACY_TYPES = {"png": "png", "jpg": "jpg", "jpeg": "jpg", "cls": "cls", "json": "json", "npy": "npy"}


def _declare(members: Mapping[str, str | Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Normalise ``{name: type | {"type": type, **params}}`` to ``{name: {"type": type, **params}}``."""
    out: dict[str, dict[str, Any]] = {}
    for name, spec in members.items():
        spec = dict(spec) if isinstance(spec, Mapping) else {"type": spec}
        kind = spec.get("type")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(f"member name {name!r} must be dot-separated [A-Za-z0-9_-] words (no '/', no leading "
                             "'.' or '_')")
        if kind not in MEMBER_TYPES:
            raise ValueError(f"member {name!r}: unknown type {kind!r}; allowed types: {sorted(MEMBER_TYPES)}")
        wanted = _PARAMS.get(kind, set())
        if set(spec) - {"type"} != wanted:
            raise ValueError(f"member {name!r} of type {kind!r} takes parameters {sorted(wanted)}, "
                             f"got {sorted(set(spec) - {'type'})}")
        if kind == "flac" and (not isinstance(spec["sample_rate"], int) or spec["sample_rate"] <= 0):
            raise ValueError(f"member {name!r}: sample_rate must be a positive int (Hz), got {spec['sample_rate']!r}")
        if kind == "raw":
            if spec["dtype"] not in _RAW_DTYPES:
                raise ValueError(f"member {name!r}: dtype {spec['dtype']!r} unknown; allowed: {list(_RAW_DTYPES)}")
            shape = spec["shape"]
            if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) and d > 0 for d in shape):
                raise ValueError(f"member {name!r}: shape must be a list of positive ints, got {shape!r}")
            spec["shape"] = list(shape)
        out[name] = spec
    if not out:
        raise ValueError("declare at least one member")
    return out


def write_split(folder: str | Path, split: str, samples: Iterable[Mapping[str, Any]],
                members: Mapping[str, str | Mapping[str, Any]], *, shard_size: int,
                show_progress: bool = False) -> dict[str, Any]:
    """Write ``samples`` (dicts of member name → value) as shards of ``split``, ``shard_size`` samples each.

    ``members`` declares every member each sample holds, as a type from :data:`MEMBER_TYPES` or a dict with
    the type's parameters, e.g. ``{"flac": {"type": "flac", "sample_rate": 16000}, "ids.npy": "tokens"}``.
    Returns the split's manifest entry ``{"count", "shards", "members"}`` to store in ``meta["splits"][split]``.
    """
    folder = Path(folder)
    if not split or "." in split or "/" in split or "-" in split:
        raise ValueError(f"split name {split!r} may not contain '.', '/' or '-', nor be empty")
    declared = _declare(members)
    if show_progress:
        samples = progress(samples, desc=f"write {split}", unit="sample")
    shards: list[str] = []
    count = 0
    # mtime=0: byte-identical shards for identical inputs, and plain ustar headers (no per-member PAX
    # record), which halves the reader's tar parsing time.
    with wds.ShardWriter(_shard_pattern(folder, split), maxcount=shard_size, verbose=0, mtime=0, encoder=False,
                         post=lambda fname: shards.append(Path(fname).name)) as sink:
        for i, sample in enumerate(samples):
            if set(sample) != set(declared):
                raise ValueError(f"{split} sample {i} has members {sorted(sample)}, declared {sorted(declared)}")
            encoded = {"__key__": f"{split}{i:08d}"}
            for name, spec in declared.items():
                try:
                    encoded[name] = _CODECS[spec["type"]][0](sample[name], spec)
                except (ValueError, TypeError) as exc:
                    raise ValueError(f"{split} sample {i}, member {name!r} (type {spec['type']}): {exc}") from exc
            sink.write(encoded)
            count += 1
    return {"count": count, "shards": shards, "members": declared}


def write_image_split(folder: str | Path, split: str, images: np.ndarray, labels: np.ndarray, *,
                      shard_size: int, extras: Iterable[dict[str, Any]] | None = None,
                      show_progress: bool = False, image_format: str = "png") -> dict[str, Any]:
    """Write ``images`` (N,H,W) or (N,H,W,C) uint8 with int ``labels`` as image + ``cls`` shards of ``split``.

    ``image_format``: "png" (lossless, compressed) or "raw" (the uint8 (C,H,W) bytes, declared with their
    shape: no decode when read, for small images whose PNG saves little space).

    ``extras`` yields one dict per image of further members, typed by their last extension (``latent.npy``
    → npy, ``json`` → json, ``ids.tokens`` → tokens). Returns the split's manifest entry: count, per-class
    counts, shard file names and the member declaration.
    """
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ValueError(f"{split}: images must be uint8 (N,H,W[,C]), got {images.dtype} {images.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{split}: {len(images)} images but {len(labels)} labels")
    if image_format not in ("png", "raw"):
        raise ValueError(f"{split}: image_format {image_format!r} unknown; allowed: ['png', 'raw']")
    chw = [1, *images.shape[1:3]] if images.ndim == 3 else [images.shape[3], *images.shape[1:3]]
    members: dict[str, Any] = {"png": "png", "cls": "cls"} if image_format == "png" else \
        {"raw": {"type": "raw", "dtype": "uint8", "shape": chw}, "cls": "cls"}
    more: Iterator[dict[str, Any]] | None = None
    if extras is not None:
        more = iter(extras)
        first = next(more, None)
        for name in first or {}:
            kind = name.rsplit(".", 1)[-1]
            if kind not in MEMBER_TYPES or kind in _PARAMS or name in members:
                raise ValueError(f"{split}: extra member {name!r} must end in a type from "
                                 f"{sorted(MEMBER_TYPES - set(_PARAMS))} and not repeat the image or cls; write other "
                                 "members with write_split")
            members[name] = kind
        more = itertools.chain([first] if first is not None else [], more)
    index: Iterable[int] = range(len(images))
    if show_progress:
        index = progress(index, desc=f"write {split}", unit="img")

    def samples() -> Iterator[dict[str, Any]]:
        for i in index:
            image = images[i] if image_format == "png" else \
                (images[i][None] if images.ndim == 3 else images[i].transpose(2, 0, 1))
            sample = {image_format: image, "cls": int(labels[i])}
            if more is not None:
                extra = next(more, None)
                if extra is None:
                    raise ValueError(f"{split}: extras ended after {i} of {len(images)} images")
                sample.update(extra)
            yield sample

    entry = write_split(folder, split, samples(), members, shard_size=shard_size)
    return {"count": entry["count"],
            "per_class": {str(k): int(v) for k, v in sorted(Counter(labels.tolist()).items())},
            "shards": entry["shards"], "members": entry["members"]}


_ZERO_BLOCK = bytes(512)
_REGULAR = (b"0", b"\0")


def _shard_samples(src: Iterable[dict[str, Any]], remote: Mapping[str, Mapping[str, Any]] | None = None
                   ) -> Iterator[dict[str, Any]]:
    """Pipeline stage: shard URLs in, raw samples (``__key__``, ``__url__``, member name → bytes) out.

    A local shard is memory-mapped (the folder was sha256-verified against the manifest when the
    :class:`ShardReader` opened). A shard named in ``remote`` (URL → its manifest entry ``{"bytes",
    "sha256"}``) is read whole through ``webdataset.gopen``, one shard at a time, and checked against that
    entry before any of its samples is yielded.
    """
    for item in src:
        url = item["url"]
        if remote is None or url not in remote:
            with open(url, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                yield from _tar_samples(data, url)
            continue
        try:
            with wds.gopen(url, "rb") as f:
                data = f.read()
        except Exception as exc:
            raise OutputError(f"{url}: cannot read the shard ({exc})") from exc
        expected = remote[url]
        if len(data) != expected["bytes"] or hashlib.sha256(data).hexdigest() != expected["sha256"]:
            raise OutputError(f"{url}: {len(data)} bytes whose sha256 does not match the manifest's entry "
                              f"({expected['bytes']} bytes): truncated, edited or not this folder's shard")
        yield from _tar_samples(data, url)


def _tar_samples(data: Any, url: str) -> Iterator[dict[str, Any]]:
    """The samples of one tar in ``data`` (bytes or a memory map). A direct ustar parser (about 10x faster
    than Python's ``tarfile``): members group into samples at the first dot of the basename, exactly as
    WebDataset groups them; a member that is not a regular file, or whose path is absolute or climbs out
    with ``..``, is an error naming shard and member."""
    pos, sample, pax_path = 0, None, None
    while pos + 512 <= len(data):
        header = data[pos:pos + 512]
        if header == _ZERO_BLOCK:
            break
        name = header[:100].split(b"\0", 1)[0].decode()
        if header[345]:
            name = header[345:500].split(b"\0", 1)[0].decode() + "/" + name
        size = int(header[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
        kind = header[156:157]
        pos += 512
        body = data[pos:pos + size]
        pos += (size + 511) // 512 * 512
        if kind == b"x":  # PAX extended header: records "<len> key=value\n"; only path matters here
            for rec in bytes(body).decode("utf-8").splitlines():
                field = rec.split(" ", 1)[1] if " " in rec else ""
                if field.startswith("path="):
                    pax_path = field[5:]
            continue
        if kind in (b"5", b"g"):
            continue
        if pax_path is not None:
            name, pax_path = pax_path, None
        if kind not in _REGULAR:
            raise OutputError(f"{url}: tar member {name!r} has type {kind!r}; shards hold regular files only")
        if name.startswith("/") or ".." in name.split("/"):
            raise OutputError(f"{url}: tar member {name!r} escapes its sample (absolute path or '..')")
        base = name.rsplit("/", 1)[-1]
        if "." not in base:
            raise OutputError(f"{url}: tar member {name!r} has no extension")
        key, ext = name[:len(name) - len(base)] + base.split(".", 1)[0], base.split(".", 1)[1]
        if sample is None or sample["__key__"] != key:
            if sample is not None:
                yield sample
            sample = {"__key__": key, "__url__": url}
        sample[ext] = body
    if sample is not None:
        yield sample


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")


def _local_folder(location: str | Path) -> Path | None:
    """The local folder ``location`` names (a path or a ``file://`` URL); None for any other URL."""
    if isinstance(location, Path):
        return location
    if location.startswith("file://"):
        return Path(unquote(urlparse(location).path))
    return None if _SCHEME.match(location) else Path(location)


def _remote_manifest(location: str, url: str) -> dict[str, Any]:
    """The manifest at ``url``, its schema and digest checked (its files are checked as they are streamed)."""
    try:
        with wds.gopen(url, "rb") as f:
            manifest = json.loads(f.read())
    except json.JSONDecodeError as exc:
        raise OutputError(f"{url}: not valid JSON ({exc})") from None
    except Exception as exc:
        raise OutputError(f"{location}: cannot read its {MANIFEST} at {url} ({exc})") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict) \
            or manifest.get("schema") != SCHEMA:
        schema = manifest.get("schema") if isinstance(manifest, dict) else None
        raise OutputError(f"{url}: schema {schema!r}, expected {SCHEMA!r}")
    if manifest_digest(manifest) != manifest.get("digest"):
        raise OutputError(f"{url}: digest does not match its own contents (manifest was edited)")
    return manifest


def _decode_sample(sample: dict[str, Any], members: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    """Decode every member by its declared type; an undeclared, missing or undecodable member is an error
    naming shard, key and member. ``members=None``: a manifest from before declarations (types by extension).
    """
    url, key = sample.get("__url__"), sample["__key__"]
    names = [n for n in sample if not n.startswith("__")]
    if members is None:
        specs = {}
        for name in names:
            kind = _LEGACY_TYPES.get(name.rsplit(".", 1)[-1].lower())
            if kind is None:
                raise OutputError(f"{url}: sample {key!r} has member {name!r}; allowed extensions (manifest without "
                                  f"member declarations): {sorted(_LEGACY_TYPES)}")
            specs[name] = {"type": kind}
    else:
        specs = members
        for name in names:
            if name not in members:
                raise OutputError(f"{url}: sample {key!r} has member {name!r}, which the manifest does not declare "
                                  f"(declared: {sorted(members)})")
        if len(names) != len(members):
            raise OutputError(f"{url}: sample {key!r} lacks declared member(s) {sorted(set(members) - set(names))}")
    out: dict[str, Any] = {"__key__": key}
    for name in names:
        spec = specs[name]
        try:
            out[name] = _CODECS[spec["type"]][1](sample[name], spec)
        except Exception as exc:
            raise OutputError(f"{url}: sample {key!r} member {name!r} is not valid {spec['type']} data "
                              f"as the manifest declares ({exc})") from exc
    return out


class ShardReader:
    """A verified shard folder of any modality. Construction checks the manifest, every file's sha256 (a
    remote folder's files: as they are streamed) and each split's member declaration; ``stream(split)``
    yields decoded samples as dicts.

    ``location``: a local folder, a ``file://`` URL of one, or a URL prefix that ``webdataset.gopen`` reads
    (``http(s)://host/dir``, ``pipe:cat /dir``, ...): a file's URL is ``location/name``, or ``location`` with
    ``{name}`` replaced where it holds that placeholder (``pipe:aws s3 cp s3://bucket/dir/{name} -``).
    ``folder`` is the local folder, None for a remote one; ``location`` is what messages name.
    """

    def __init__(self, location: str | Path, *, verify: bool = True):
        self.folder: Path | None = _local_folder(location)
        self.location = str(self.folder) if self.folder is not None else str(location).rstrip("/")
        if self.folder is not None:
            self.manifest = read_manifest(self.folder, verify=verify)
            self._remote: dict[str, dict[str, Any]] | None = None
        else:
            self.manifest = _remote_manifest(self.location, self.url(MANIFEST))
            self._remote = {self.url(name): info for name, info in self.manifest["files"].items()}
        self.meta: dict[str, Any] = self.manifest.get("meta", {})
        self.digest: str = self.manifest["digest"]
        mpath = self.url(MANIFEST)
        if not isinstance(self.meta.get("splits"), dict):
            raise OutputError(f"{mpath}: not a shard folder (no 'splits' in meta)")
        self._members: dict[str, dict[str, dict[str, Any]] | None] = {}
        for split, entry in self.meta["splits"].items():
            for name in entry.get("shards", []):
                if name not in self.manifest["files"] or "/" in name:
                    raise OutputError(f"{mpath}: split {split!r} names shard {name!r}, not a file of this folder")
            try:
                self._members[split] = _declare(entry["members"]) if "members" in entry else None
            except ValueError as exc:
                raise OutputError(f"{mpath}: split {split!r}: {exc}") from None

    def splits(self) -> list[str]:
        return list(self.meta["splits"])

    def _split(self, split: str) -> dict[str, Any]:
        if split not in self.meta["splits"]:
            raise OutputError(f"{self.location}: no split {split!r}; has {sorted(self.meta['splits'])}")
        return self.meta["splits"][split]

    def count(self, split: str) -> int:
        return int(self._split(split)["count"])

    def members(self, split: str) -> dict[str, dict[str, Any]] | None:
        """The split's declaration ``{name: {"type": ..., **params}}``; None for a manifest that predates them."""
        self._split(split)
        return self._members[split]

    def url(self, name: str) -> str:
        """Where the folder's file ``name`` is read from: a local path or a ``gopen`` URL."""
        if self.folder is not None:
            return str(self.folder / name)
        return self.location.replace("{name}", name) if "{name}" in self.location else f"{self.location}/{name}"

    def urls(self, split: str) -> list[str]:
        return [self.url(name) for name in self._split(split)["shards"]]

    def stream(self, split: str, *, shuffle_buffer: int = 0, seed: int = 0) -> wds.DataPipeline:
        """Decoded samples (dicts with ``__key__`` and one entry per member), split by node and by DataLoader
        worker. Without a shuffle buffer, in write order; with one, shards and samples are shuffled from
        ``seed`` (reproducible).
        """
        return self._pipeline(split, partial(_decode_sample, members=self.members(split)), shuffle_buffer, seed)

    def _pipeline(self, split: str, decode: Callable[[dict[str, Any]], Any], shuffle_buffer: int,
                  seed: int) -> wds.DataPipeline:
        """Raw samples of ``split`` (shuffled when ``shuffle_buffer``), each mapped by ``decode``: one stage
        for decoding and whatever the caller makes of the sample, since every stage costs per sample."""
        stages: list[Any] = [wds.SimpleShardList(self.urls(split), seed=seed if shuffle_buffer else None),
                             wds.split_by_node, wds.split_by_worker, partial(_shard_samples, remote=self._remote)]
        if shuffle_buffer:  # the buffer fills before the first pick: with a buffer ≥ the split, a uniform shuffle
            stages.append(wds.shuffle(shuffle_buffer, initial=shuffle_buffer, seed=seed))
        stages.append(wds.map(decode))
        return wds.DataPipeline(*stages)

    def __repr__(self) -> str:
        counts = {s: self.count(s) for s in self.splits()}
        return f"{type(self).__name__}({self.location!r}, {counts})"


def _image_batch(samples: list[tuple[Any, ...]]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.stack([s[0] for s in samples]), torch.tensor([s[1] for s in samples], dtype=torch.int64)


class ShardSet(ShardReader):
    """An image shard folder: one png, jpg or raw member and a ``cls`` label per sample, ``shape`` and
    ``classes`` in ``meta``.

    ``load(split)`` returns the whole split as tensors (fast path for data that fits in memory), ``take(split,
    indices)`` a subset of it in one pass; ``dataset(split)`` / ``loader(split)`` stream it (in write order, or
    through a shuffle buffer), split by node and worker.
    """

    def __init__(self, folder: str | Path, *, verify: bool = True):
        super().__init__(folder, verify=verify)
        if "shape" not in self.meta:
            raise OutputError(f"{self.url(MANIFEST)}: not an image shard folder (no 'shape' in meta)")
        self.shape: tuple[int, int, int] = tuple(self.meta["shape"])  # type: ignore[assignment]
        self.classes: list[str] = list(self.meta["classes"])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def _image_member(self, split: str, extras: tuple[str, ...]) -> str:
        members = self.members(split)
        if members is None:
            return "png"
        images = [n for n, spec in members.items() if spec["type"] in _IMAGE_TYPES]
        if len(images) != 1 or members.get("cls", {}).get("type") != "cls":
            raise OutputError(f"{self.location}: split {split!r} declares {members}; an image split needs one png, "
                              "jpg or raw member and a 'cls' member of type cls")
        missing = [e for e in extras if e not in members]
        if missing:
            raise OutputError(f"{self.location}: split {split!r} has no member(s) {missing}; "
                              f"declared {sorted(members)}")
        return images[0]

    def dataset(self, split: str, *, shuffle_buffer: int = 0, seed: int = 0,
                extras: tuple[str, ...] = ()) -> wds.DataPipeline:
        """Stream ``(image uint8 CxHxW, label, *extras)`` tuples, split by node and by DataLoader worker.

        ``extras`` names further members to return, e.g. ``("latent.npy", "json")``.
        With a shuffle buffer, shard order and samples are shuffled from ``seed`` (reproducible).
        """
        image, members = self._image_member(split, extras), self.members(split)

        def image_tuple(sample: dict[str, Any]) -> tuple[Any, ...]:
            decoded = _decode_sample(sample, members)
            return (decoded[image], decoded["cls"], *(decoded[e] for e in extras))

        return self._pipeline(split, image_tuple, shuffle_buffer, seed)

    def loader(self, split: str, *, batch_size: int, num_workers: int = 0, shuffle_buffer: int = 0,
               seed: int = 0, partial: bool = True) -> wds.WebLoader:
        """Batched stream of ``(images uint8 (B,C,H,W), labels int64 (B,))``. Workers are capped at the shard
        count so none is left without data; each worker batches its own shards, so with ``partial=False``
        every worker drops its own ragged rest."""
        workers = min(num_workers, len(self.urls(split)))
        ds = self.dataset(split, shuffle_buffer=shuffle_buffer, seed=seed)
        ds.append(wds.batched(batch_size, collation_fn=_image_batch, partial=partial))
        return wds.WebLoader(ds, batch_size=None, num_workers=workers)

    def labels(self, split: str) -> torch.Tensor:
        """Every label of the split in write order, int64 (N,): one pass that decodes only the ``cls`` members."""
        self._image_member(split, ())
        labels = torch.tensor(list(self._pipeline(split, lambda sample: _decode_sample(
            {"__key__": sample["__key__"], "__url__": sample["__url__"], "cls": sample["cls"]},
            {"cls": {"type": "cls"}})["cls"], 0, 0)), dtype=torch.int64)
        if len(labels) != self.count(split):
            raise OutputError(f"{self.location}: split {split!r} has {len(labels)} samples, manifest says "
                              f"{self.count(split)}")
        return labels

    def take(self, split: str, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The samples at ``indices`` (positions in write order, distinct), in the order given: images uint8
        (k,C,H,W) and labels int64 (k,). One pass over the split that decodes only those samples, so memory
        holds k images, not the split (what a seeded subset of a large split needs)."""
        wanted = {int(i): j for j, i in enumerate(indices.tolist())}
        n = self.count(split)
        if len(wanted) != len(indices) or any(not 0 <= i < n for i in wanted):
            raise ValueError(f"{self.location}: take from split {split!r} needs distinct positions in [0, {n}), "
                             f"got {len(indices)} positions ({len(wanted)} distinct)")
        image, members = self._image_member(split, ()), self.members(split)
        x = torch.empty((len(wanted), *self.shape), dtype=torch.uint8)
        y = torch.empty(len(wanted), dtype=torch.int64)
        position = itertools.count()

        def pick(sample: dict[str, Any]) -> int | None:
            i = next(position)
            if i not in wanted:
                return None
            decoded = _decode_sample(sample, members)
            if tuple(decoded[image].shape) != self.shape:
                raise OutputError(f"{self.location}: {split} sample {i} has shape {tuple(decoded[image].shape)}, "
                                  f"manifest says {self.shape}")
            x[wanted[i]], y[wanted[i]] = decoded[image], decoded["cls"]
            return i

        for _ in self._pipeline(split, pick, 0, 0):
            pass
        seen = next(position)
        if seen != n:
            raise OutputError(f"{self.location}: split {split!r} has {seen} samples, manifest says {n}")
        return x, y

    def load(self, split: str, extras: tuple[str, ...] = ()) -> tuple[Any, ...]:
        """The whole split, in write order: images uint8 (N,C,H,W), labels int64 (N,), then one list per
        name in ``extras``."""
        n = self.count(split)
        x = torch.empty((n, *self.shape), dtype=torch.uint8)
        y = torch.empty(n, dtype=torch.int64)
        more: list[list[Any]] = [[] for _ in extras]
        i = 0
        for img, label, *rest in self.dataset(split, extras=extras):
            if i >= n:
                break
            for store, value in zip(more, rest):
                store.append(value)
            if tuple(img.shape) != self.shape:
                raise OutputError(f"{self.location}: {split} sample {i} has shape {tuple(img.shape)}, "
                                  f"manifest says {self.shape}")
            x[i], y[i] = img, label
            i += 1
        if i != n:
            raise OutputError(f"{self.location}: split {split!r} has {i} samples, manifest says {n}")
        return (x, y, *more)

    def __repr__(self) -> str:
        counts = {s: self.count(s) for s in self.splits()}
        return f"ShardSet({self.location!r}, shape={self.shape}, classes={self.num_classes}, {counts})"
