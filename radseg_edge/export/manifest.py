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
from dataclasses import MISSING, dataclass, field, fields
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
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EngineError(f"{path} is not valid JSON ({exc}); re-export the model") from None
        except OSError as exc:
            raise EngineError(f"{path} cannot be read ({exc.strerror or exc}); check the export folder") from None
        if not isinstance(data, dict):
            raise EngineError(f"{path} holds a JSON {type(data).__name__}, not a manifest object; re-export the model")
        if data.get("manifest_version") != MANIFEST_VERSION:
            raise EngineError(
                f"{path} has manifest version {data.get('manifest_version')}, this radseg-edge reads "
                f"version {MANIFEST_VERSION}; re-export the model"
            )
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        missing = sorted(f.name for f in fields(cls) if f.name not in data and f.default is MISSING
                         and f.default_factory is MISSING)
        if unknown or missing:
            raise EngineError(f"{path} is not a radseg-edge manifest (unknown fields: {', '.join(unknown) or 'none'}; "
                              f"missing fields: {', '.join(missing) or 'none'}); re-export the model")
        bad = [n for n in ("model", "vocabulary", "windows", "artefacts") if n in data and not isinstance(data[n], dict)]
        if bad or not all(isinstance(v, dict) for v in data.get("artefacts", {}).values()):
            raise EngineError(f"{path}: fields {', '.join(bad) or 'artefacts'} must be JSON objects; re-export the model")
        return cls(**data)

    def artefact_path(self, folder: str | os.PathLike, role: str, verify: bool = False) -> Path:
        """Path of the artefact with ``role``, confined to ``folder``.

        Raises:
            EngineError: the role is absent (the message names the roles present), its ``file`` is absolute,
                leaves the folder (``../x``, a link pointing outside) or, with ``verify``, the file is missing
                or its SHA-256 differs from the one recorded here.
        """
        if role not in self.artefacts:
            raise EngineError(
                f"the export folder {folder} has no '{role}' artefact (it has: {', '.join(sorted(self.artefacts)) or 'none'})"
            )
        record = self.artefacts[role]
        name = record.get("file") if isinstance(record, dict) else None
        if not isinstance(name, str) or not name:
            raise EngineError(f"{Path(folder) / MANIFEST_NAME}: artefact '{role}' has no file name; re-export the model")
        base = Path(folder).resolve()
        path = (base / name).resolve()
        if Path(name).is_absolute() or not path.is_relative_to(base):
            raise EngineError(
                f"{Path(folder) / MANIFEST_NAME}: artefact '{role}' points outside the export folder ({name!r}); "
                "an export folder may only name files inside it: re-export the model"
            )
        if verify:
            self._verify_file(folder, role, path)
        return Path(folder) / name

    def _verify_file(self, folder: str | os.PathLike, role: str, path: Path) -> None:
        from radseg_edge.export.cache import sha256_file

        expected = self.artefacts[role].get("sha256")
        if not path.is_file():
            raise EngineError(f"{path}: the '{role}' artefact named in {MANIFEST_NAME} is missing; re-export the model")
        if not isinstance(expected, str) or not expected:
            raise EngineError(f"{path}: {MANIFEST_NAME} records no SHA-256 for the '{role}' artefact; re-export the model")
        if sha256_file(path) != expected.lower():
            raise EngineError(
                f"{path}: SHA-256 differs from the one recorded in {MANIFEST_NAME} (the file was changed, replaced or "
                "truncated after the export); refusing to run it: re-export the model or copy the folder again"
            )

    def verify(self, folder: str | os.PathLike, roles=None) -> None:
        """Check every artefact (or those of ``roles``) before anything runs: paths inside ``folder``, files
        present, SHA-256 as recorded, and window settings that cannot produce NaN.

        Raises:
            EngineError: naming the file (or manifest field) at fault.
        """
        for role in self.artefacts if roles is None else roles:
            self.artefact_path(folder, role, verify=True)
        from radseg_edge.pipeline import check_settings

        w = self.windows if isinstance(self.windows, dict) else {}
        try:
            check_settings(crop=int(w["crop"]), stride=int(w["stride"]), patch=int(w.get("patch", 16)),
                           scra_tau=float(w.get("scra_tau", 10.0)), scga_tau=float(w.get("scga_tau", 10.0)),
                           denoise=float(w.get("denoise", 0.5)),
                           prediction_thresh=float(w.get("prediction_thresh", 0.0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise EngineError(f"{Path(folder) / MANIFEST_NAME}: unusable 'windows' settings ({exc}); re-export the model") from None

    def check_vocabulary(self, vocabulary, folder: str | os.PathLike = "") -> None:
        """Refuse a vocabulary whose width or text model does not fit the exported head (what
        ``Vocabulary.check_compatible`` does for a checkpoint, from the manifest alone: no checkpoint needed).

        Raises:
            VocabularyError: naming the export folder and both widths / text models.
        """
        from radseg_edge.errors import VocabularyError
        from radseg_edge.models.text import UNSPECIFIED

        where = f"the export {folder}" if folder else "the export"
        dim = self.vocabulary.get("dim") if isinstance(self.vocabulary, dict) else None
        if dim is not None and int(vocabulary.dim) != int(dim):
            raise VocabularyError(f"vocabulary embeddings are {vocabulary.dim}-d but {where} takes {dim}-d class "
                                  "embeddings; rebuild the vocabulary with the text model the export was made for")
        expected = self.vocabulary.get("text_model") if isinstance(self.vocabulary, dict) else None
        if expected and expected != UNSPECIFIED and vocabulary.text_model not in (UNSPECIFIED, expected):
            raise VocabularyError(f"vocabulary was built with text model {vocabulary.text_model} but {where} expects "
                                  f"{expected}; rebuild it: radseg-edge vocab build --text-model {expected}")
