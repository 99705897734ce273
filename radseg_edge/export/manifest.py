"""The manifest.json written beside exported artefacts.

It records what a deployment needs to trust the folder: the model and vocabulary the graphs were made
from, the window geometry, the precision, the artefacts (with SHA-256), software versions and the
accuracy-gate figures.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

from radseg_edge.errors import EngineError

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1

#: distributions whose versions are recorded when installed.
VERSIONED_PACKAGES = (
    "radseg-edge",
    "torch",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxconverter-common",
    "polygraphy",
    "nvidia-modelopt",
    "tensorrt",
    "torch-tensorrt",
    "numpy",
)


def installed_versions(packages=VERSIONED_PACKAGES) -> dict[str, str]:
    """{distribution: version} of the installed ones among ``packages``, plus python."""
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


@dataclass
class Manifest:
    """Contents of manifest.json. ``artefacts`` maps a role ("backbone", "head", "pipeline", "engine")
    to {"file": name, "sha256": ..., and role-specific fields such as inputs/outputs}."""

    format: str
    precision: str
    model: dict
    vocabulary: dict
    windows: dict
    artefacts: dict = field(default_factory=dict)
    gate: dict = field(default_factory=dict)
    versions: dict = field(default_factory=installed_versions)
    notes: list = field(default_factory=list)
    manifest_version: int = MANIFEST_VERSION

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, sort_keys=True) + "\n"

    def write(self, folder: str | os.PathLike) -> Path:
        path = Path(folder) / MANIFEST_NAME
        path.write_text(self.to_json())
        return path

    @classmethod
    def read(cls, folder: str | os.PathLike) -> Manifest:
        path = Path(folder)
        if path.is_dir():
            path = path / MANIFEST_NAME
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise EngineError(f"{path} not found: is this a folder written by `radseg-edge export`?") from exc
        except json.JSONDecodeError as exc:
            raise EngineError(f"{path} is not valid JSON ({exc}); re-export the model") from exc
        if data.get("manifest_version") != MANIFEST_VERSION:
            raise EngineError(
                f"{path} has manifest version {data.get('manifest_version')}, this radseg-edge reads "
                f"version {MANIFEST_VERSION}; re-export the model"
            )
        return cls(**data)

    def artefact_path(self, folder: str | os.PathLike, role: str) -> Path:
        """Path of the artefact with ``role``; EngineError naming the roles present when absent."""
        if role not in self.artefacts:
            raise EngineError(
                f"the export folder {folder} has no '{role}' artefact (it has: {', '.join(sorted(self.artefacts)) or 'none'})"
            )
        return Path(folder) / self.artefacts[role]["file"]
