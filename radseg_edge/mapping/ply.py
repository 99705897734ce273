"""Minimal PLY point clouds: write coloured (optionally labelled) points; read vertex-only PLY files.

Reading supports ascii and binary little/big-endian files whose only element is ``vertex`` (or whose vertex
element comes first), with scalar properties - enough for labelled ground-truth clouds (x y z + a label
property such as ``label``, ``class`` or ``objectId``) and for the files :func:`write_ply` makes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from radseg_edge.errors import InputError

_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2", "ushort": "u2",
          "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4", "float": "f4", "float32": "f4",
          "double": "f8", "float64": "f8"}


def write_ply(path: str | Path, xyz: np.ndarray, colors: np.ndarray, labels: np.ndarray | None = None) -> Path:
    """Binary little-endian PLY: N x 3 float32 positions, N x 3 uint8 colours, optional N int32 ``label``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = xyz.shape[0]
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    if labels is not None:
        fields.append(("label", "<i4"))
    data = np.empty(n, dtype=fields)
    data["x"], data["y"], data["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    data["red"], data["green"], data["blue"] = colors[:, 0], colors[:, 1], colors[:, 2]
    if labels is not None:
        data["label"] = labels
    names = {"<f4": "float", "u1": "uchar", "<i4": "int"}
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    header += [f"property {names[t]} {name}" for name, t in fields] + ["end_header"]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(data.tobytes())
    tmp.replace(path)
    return path


def read_ply(path: str | Path) -> dict[str, np.ndarray]:
    """The vertex properties of a PLY file, by name (each an N array)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"point cloud not found: {p}")
    raw = p.read_bytes()
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise InputError(f"{p}: not a PLY file (no 'ply' magic or no end_header)")
    body_start = raw.index(b"\n", end) + 1
    lines = raw[:end].decode("ascii", "replace").splitlines()
    fmt, count, props, in_vertex = None, 0, [], False
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "format":
            fmt = parts[1]
        elif parts[0] == "element":
            if props or in_vertex:
                break  # the vertex element is the first one; later elements are ignored
            in_vertex = parts[1] == "vertex"
            count = int(parts[2])
            if not in_vertex:
                raise InputError(f"{p}: the first PLY element is {parts[1]!r}, expected 'vertex'")
        elif parts[0] == "property" and in_vertex:
            if parts[1] == "list":
                raise InputError(f"{p}: list properties in the vertex element are not supported")
            if parts[1] not in _TYPES:
                raise InputError(f"{p}: unknown PLY property type {parts[1]!r}")
            props.append((parts[2], _TYPES[parts[1]]))
    if not props:
        raise InputError(f"{p}: no vertex properties")
    if fmt == "ascii":
        text = raw[body_start:].decode("ascii").split()
        values = np.array(text[: count * len(props)], dtype=np.float64).reshape(count, len(props))
        return {name: values[:, i].astype(t) for i, (name, t) in enumerate(props)}
    order = {"binary_little_endian": "<", "binary_big_endian": ">"}.get(fmt or "")
    if order is None:
        raise InputError(f"{p}: unknown PLY format {fmt!r}")
    dtype = np.dtype([(name, order + t) for name, t in props])
    if len(raw) - body_start < count * dtype.itemsize:
        raise InputError(f"{p}: truncated PLY ({count} vertices announced)")
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=body_start)
    return {name: np.asarray(data[name]) for name, _ in props}
