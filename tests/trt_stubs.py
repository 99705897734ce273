"""The ``tensorrt-stubs`` type stubs (the TensorRT Python API without the library), made usable by mypy.

The 10.13 stubs are installed with ``pip install --no-deps --target .stubs tensorrt-stubs`` (their dependency ``tensorrt``
cannot install without NVIDIA's libraries). Their files need three mechanical repairs before mypy reads
them: parameters named ``in`` (a keyword), parameters without a default after ones with a default, and an
import of ``tensorrt_libs`` (a runtime-only package). :func:`usable_stubs` copies them with those repairs
into a folder for ``MYPYPATH``; :func:`stub_members` lists what a stub class defines (the recording fakes'
method names are checked against it).
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import tempfile
from pathlib import Path

STUBS_MISSING = ("tensorrt-stubs is not installed: pip install --no-deps --target .stubs tensorrt-stubs==10.13.0.35.1 "
                 "(the README's test command does)")

#: where the README's test command puts the stubs (kept off sys.path: their empty ``tensorrt`` folder would
#: look like an installed TensorRT to other packages).
STUBS_FOLDER = Path(__file__).resolve().parents[1] / ".stubs"


def stubs_root() -> Path | None:
    """The folder holding ``tensorrt/__init__.pyi`` and ``tensorrt_bindings/`` of the stubs (``.stubs/`` of the
    repository first, else an installed distribution), or None."""
    for dist in [*importlib.metadata.distributions(path=[str(STUBS_FOLDER)]), None]:
        if dist is None:
            try:
                dist = importlib.metadata.distribution("tensorrt-stubs")
            except importlib.metadata.PackageNotFoundError:
                return None
        elif dist.metadata["Name"] != "tensorrt-stubs":
            continue
        root = Path(str(dist.locate_file("")))
        if (root / "tensorrt_bindings" / "tensorrt.pyi").is_file():
            return root
    return None


def _repair_signature(line: str) -> str:
    """Give ``= ...`` to parameters that follow a defaulted one in a one-line ``def``."""
    m = re.match(r"^(\s*def \w+\()(.*)(\)\s*->.*)$", line)
    if not m:
        return line
    params, depth, cur = [], 0, ""
    for ch in m.group(2):
        if ch == "," and depth == 0:
            params.append(cur)
            cur = ""
            continue
        depth += ch in "[(" and 1 or (ch in "])" and -1 or 0)
        cur += ch
    params.append(cur)
    seen_default = False
    for i, p in enumerate(params):
        if "=" in p:
            seen_default = True
        elif seen_default and p.strip() and not p.strip().startswith("*"):
            params[i] = p + " = ..."
    return m.group(1) + ",".join(params) + m.group(3)


def _repair(text: str) -> str:
    text = re.sub(r"\bin: ", "in_: ", text)
    text = "\n".join(_repair_signature(line) for line in text.splitlines()) + "\n"
    return text.replace("import tensorrt_libs as tensorrt_libs\n", "")


@functools.lru_cache(maxsize=1)
def usable_stubs() -> Path | None:
    """A folder (for MYPYPATH) with repaired copies of the stubs; None when they are not installed."""
    root = stubs_root()
    if root is None:
        return None
    out = Path(tempfile.mkdtemp(prefix="trt_stubs_"))
    for package in ("tensorrt", "tensorrt_bindings"):
        for src in (root / package).glob("*.pyi"):
            dst = out / package / src.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(_repair(src.read_text()))
    return out


@functools.lru_cache(maxsize=1)
def _stub_tree() -> dict[str, set[str]]:
    folder = usable_stubs()
    assert folder is not None
    tree = ast.parse((folder / "tensorrt_bindings" / "tensorrt.pyi").read_text())
    out: dict[str, set[str]] = {"": set()}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names = set()
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    names.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    names.add(item.target.id)
                elif isinstance(item, ast.Assign):
                    names.update(t.id for t in item.targets if isinstance(t, ast.Name))
            out[node.name] = names
            out[""].add(node.name)
        elif isinstance(node, ast.FunctionDef):
            out[""].add(node.name)
        elif isinstance(node, ast.Assign):
            out[""].update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[""].add(node.target.id)
    return out


def stub_members(class_name: str) -> set[str]:
    """Names (methods, properties, class attributes) the stub class defines; "" for the module's own names."""
    return _stub_tree()[class_name]
