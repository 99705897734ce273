"""A TensorRT engine cache that refuses engines built for another machine.

An engine is valid only for the exact GPU (model, SM version, SM count: Orin Nano, NX and AGX differ),
TensorRT and CUDA versions, L4T release on Jetson, precision and shape profile (EDGE.md, "Engines").
The cache key covers all of these plus SHA-256 hashes of the ONNX file and of every plugin library.
Each engine ``<name>.engine`` is stored with its key in ``<name>.engine.json``; loading an engine whose
recorded key differs from the current one raises :class:`EngineError` naming every differing field.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from radseg_edge.errors import EngineError

KEY_SUFFIX = ".json"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class DeviceDescription:
    """What an engine depends on about the machine that builds or runs it.

    ``sm`` is the compute capability as "major.minor" (Orin: "8.7"); ``l4t`` is the L4T release from
    /etc/nv_tegra_release on Jetson (e.g. "36.4.3"), "" elsewhere.
    """

    gpu_name: str
    sm: str
    sm_count: int
    tensorrt: str
    cuda: str
    l4t: str = ""


def read_l4t_release(path: str | os.PathLike = "/etc/nv_tegra_release") -> str:
    """The L4T release ("36.4.3") from /etc/nv_tegra_release, or "" when not on a Jetson.

    The file's first line reads ``# R36 (release), REVISION: 4.3, GCID: ...``.
    """
    try:
        first = Path(path).read_text().splitlines()[0]
    except (OSError, IndexError):
        return ""
    major, revision = "", ""
    for part in first.replace("#", "").split(","):
        part = part.strip()
        if part.startswith("R") and "(" in part:
            major = part.split()[0][1:]
        elif part.upper().startswith("REVISION:"):
            revision = part.split(":", 1)[1].strip()
    return f"{major}.{revision}" if major and revision else ""


def describe_cuda_device(runtime: str, device_index: int = 0) -> DeviceDescription:
    """Describe the current CUDA device for an engine made by ``runtime`` (needs torch with CUDA).

    Args:
        runtime: what builds the engines, recorded in the ``tensorrt`` field: the TensorRT version
            ("10.3.0.30"), or e.g. "onnxruntime-1.23.0" (TensorRT EP) or "torch-tensorrt-2.5.0".
    Raises:
        EngineError: when no CUDA device is visible.
    """
    import torch

    if not torch.cuda.is_available():
        raise EngineError("TensorRT engines need a CUDA GPU, and torch sees none on this machine")
    props = torch.cuda.get_device_properties(device_index)
    return DeviceDescription(
        gpu_name=props.name,
        sm=f"{props.major}.{props.minor}",
        sm_count=int(props.multi_processor_count),
        tensorrt=runtime,
        cuda=str(torch.version.cuda or ""),
        l4t=read_l4t_release(),
    )


def describe_device(device_index: int = 0) -> DeviceDescription:
    """Describe the current CUDA device and TensorRT install (needs torch with CUDA and tensorrt).

    Raises:
        EngineError: when no CUDA device is visible.
        MissingDependencyError: when tensorrt is not installed.
    """
    from radseg_edge.export.engine import ensure_tensorrt

    return describe_cuda_device(ensure_tensorrt("building or loading TensorRT engines"), device_index)


def device_digest(device: DeviceDescription, length: int = 16) -> str:
    """Short hex digest of a device description (names per-device caches)."""
    return hashlib.sha256(json.dumps(asdict(device), sort_keys=True).encode()).hexdigest()[:length]


def timing_cache_path(folder: str | os.PathLike, device: DeviceDescription) -> Path:
    """The TensorRT timing cache of ``device`` in ``folder``: ``timing-<device digest>.cache``."""
    return Path(folder) / f"timing-{device_digest(device)}.cache"


def plugin_records(folder: str | os.PathLike, libraries: Iterable[str | os.PathLike]) -> list[dict]:
    """Manifest records of plugin libraries inside an export folder: [{"file": relative path, "sha256": ...}]."""
    root = Path(folder).resolve()
    out = []
    for lib in libraries:
        path = Path(lib).resolve()
        out.append({"file": path.relative_to(root).as_posix(), "sha256": sha256_file(path)})
    return out


def format_profile(profile: Mapping[str, Iterable[Iterable[int]]] | None) -> str:
    """Canonical text of a shape profile {input: (min, opt, max) shapes}; "static" when None/empty."""
    if not profile:
        return "static"
    parts = []
    for name in sorted(profile):
        shapes = "/".join("x".join(str(int(d)) for d in shape) for shape in profile[name])
        parts.append(f"{name}:{shapes}")
    return ";".join(parts)


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialized TensorRT engine is specific to."""

    device: DeviceDescription
    precision: str
    shape_profile: str
    onnx_sha256: str
    plugin_sha256: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def create(
        cls,
        device: DeviceDescription,
        precision: str,
        onnx_path: str | os.PathLike,
        shape_profile: Mapping[str, Iterable[Iterable[int]]] | str | None = None,
        plugin_libraries: Iterable[str | os.PathLike] = (),
    ) -> EngineKey:
        """Key of an engine built from ``onnx_path`` (hashed) with the given plugins (hashed, in order)."""
        profile = shape_profile if isinstance(shape_profile, str) else format_profile(shape_profile)
        return cls(
            device=device,
            precision=precision,
            shape_profile=profile,
            onnx_sha256=sha256_file(onnx_path),
            plugin_sha256=tuple(sha256_file(p) for p in plugin_libraries),
        )

    def as_dict(self) -> dict:
        """Flat JSON-friendly dict (device fields prefixed ``device.``)."""
        flat = {f"device.{k}": v for k, v in asdict(self.device).items()}
        flat.update(
            precision=self.precision,
            shape_profile=self.shape_profile,
            onnx_sha256=self.onnx_sha256,
            plugin_sha256=list(self.plugin_sha256),
        )
        return flat

    @classmethod
    def from_dict(cls, data: Mapping) -> EngineKey:
        device_fields = {f.name for f in fields(DeviceDescription)}
        missing = [f"device.{n}" for n in device_fields if f"device.{n}" not in data]
        missing += [n for n in ("precision", "shape_profile", "onnx_sha256") if n not in data]
        if missing:
            raise EngineError(f"engine key record lacks {', '.join(sorted(missing))}; rebuild the engine")
        device = DeviceDescription(**{n: data[f"device.{n}"] for n in device_fields})
        return cls(
            device=device,
            precision=data["precision"],
            shape_profile=data["shape_profile"],
            onnx_sha256=data["onnx_sha256"],
            plugin_sha256=tuple(data.get("plugin_sha256", ())),
        )

    def digest(self, length: int = 16) -> str:
        """Short hex digest of the whole key (used in cache file names)."""
        text = json.dumps(self.as_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:length]

    def differences(self, other: EngineKey) -> list[str]:
        """Human-readable "field: recorded X, current Y" for every field that differs (self = recorded)."""
        mine, theirs = self.as_dict(), other.as_dict()
        out = []
        for name in mine:
            if mine[name] != theirs.get(name):
                out.append(f"{name}: engine has {mine[name]!r}, this machine needs {theirs.get(name)!r}")
        return out


def key_path(engine_path: str | os.PathLike) -> Path:
    """Where an engine's key record lives: ``<engine>.json``."""
    return Path(str(engine_path) + KEY_SUFFIX)


def write_key(engine_path: str | os.PathLike, key: EngineKey) -> Path:
    """Record ``key`` beside ``engine_path``; returns the record's path."""
    path = key_path(engine_path)
    record = key.as_dict()
    record["engine_sha256"] = sha256_file(engine_path)
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path


def verify_engine(engine_path: str | os.PathLike, expected: EngineKey) -> None:
    """Refuse an engine that was not built for ``expected``.

    Raises:
        EngineError: the engine or its key record is missing or unreadable, the engine file was changed
            after it was recorded, or any key field differs (all differing fields are listed).
    """
    engine_path = Path(engine_path)
    record_path = key_path(engine_path)
    if not engine_path.is_file():
        raise EngineError(f"engine {engine_path} does not exist; build it with `radseg-edge export --format engine-fp16`")
    if not record_path.is_file():
        raise EngineError(
            f"engine {engine_path} has no key record {record_path.name}, so it cannot be checked against this "
            "machine; rebuild it with radseg-edge"
        )
    try:
        record = json.loads(record_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EngineError(f"engine key record {record_path} is unreadable ({exc}); rebuild the engine") from exc
    recorded = EngineKey.from_dict(record)
    diffs = recorded.differences(expected)
    if diffs:
        raise EngineError(
            f"refusing engine {engine_path.name}: it was built for another configuration ("
            + "; ".join(diffs)
            + "). Rebuild it on this machine."
        )
    if record.get("engine_sha256") and record["engine_sha256"] != sha256_file(engine_path):
        raise EngineError(f"refusing engine {engine_path.name}: the file changed after it was built; rebuild it")


class EngineCache:
    """A folder of engines named ``<stem>-<precision>-<key digest>.engine`` with their key records.

    ``lookup`` returns a verified engine for the key or None; a file with the same name but a different
    recorded key (a copied cache, a tampered record) is refused with :class:`EngineError`.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path_for(self, stem: str, key: EngineKey) -> Path:
        return self.root / f"{stem}-{key.precision}-{key.digest()}.engine"

    def lookup(self, stem: str, key: EngineKey) -> Path | None:
        path = self.path_for(stem, key)
        if not path.exists():
            return None
        verify_engine(path, key)
        return path

    def store(self, stem: str, key: EngineKey, engine_bytes: bytes) -> Path:
        """Write an engine and its key record atomically; returns the engine path."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path_for(stem, key)
        tmp = path.with_suffix(".engine.tmp")
        tmp.write_bytes(engine_bytes)
        os.replace(tmp, path)
        write_key(path, key)
        return path
