"""The evaluation loop: label sources (a model, or saved PNGs) scored against a dataset, resumably.

A *source* turns a sample into an H x W label map at the original image size (class ids 0..K-1;
anything else means "no class"). Several sources on the same images in one pass give each one's
scores plus their per-pixel label agreement (``--compare``).

State (confusion counts, agreement counts, timings, images done) is saved atomically every
``save_every`` images and on Ctrl-C; a later run with the same settings resumes from it, and a finished
run deletes it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np

from radseg_edge.errors import RadsegError
from radseg_edge.eval.datasets import IGNORE_LABEL, DatasetError, Sample, SegDataset
from radseg_edge.eval.labelmaps import read_label_png, write_label_png
from radseg_edge.eval.metrics import Agreement, ConfusionMatrix

STATE_VERSION = 1

#: a model's view of one image: H x W x 3 uint8 RGB at the original size -> H x W integer labels.
PredictFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class LabelSource:
    """Named producer of label maps. ``predict(sample, get_image)``; ``get_image()`` loads the image once."""

    name: str
    predict: Callable[[Sample, Callable[[], np.ndarray]], np.ndarray]
    description: dict = field(default_factory=dict)


def model_source(name: str, predictor: PredictFn, description: dict | None = None) -> LabelSource:
    """A source that runs ``predictor`` on each image (see :data:`PredictFn`)."""
    return LabelSource(name, lambda sample, get_image: predictor(get_image()), description or {"kind": "model"})


def prediction_path(directory: Path, sample: Sample) -> Path:
    """Where a sample's saved prediction lives: ``DIR/<sample name>.png`` (name may contain '/')."""
    return Path(directory) / f"{sample.name}.png"


def folder_source(directory: str | Path) -> LabelSource:
    """A source that reads saved label PNGs: ``DIR/<sample name>.png`` or ``DIR/<file name>.png``.

    The PNG holds class ids 0..K-1 of the dataset's class list (after its label mapping) and 255 (or any
    other value) for "no class"; 8 or 16 bit grayscale or palette PNG, at the original image size.
    """
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise DatasetError(f"the predictions folder {directory} does not exist")

    def predict(sample: Sample, get_image: Callable[[], np.ndarray]) -> np.ndarray:
        path = prediction_path(directory, sample)
        if not path.is_file():
            flat = directory / f"{Path(sample.name).name}.png"
            if not flat.is_file():
                raise DatasetError(f"no saved prediction for '{sample.name}': expected {path}")
            path = flat
        return read_label_png(path)

    return LabelSource(f"predictions:{directory.name}", predict, {"kind": "predictions", "path": str(directory.resolve())})


@dataclass
class _Progress:
    done: int = 0
    matrices: dict[str, ConfusionMatrix] = field(default_factory=dict)
    agreements: dict[str, Agreement] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0

    def to_json(self, fingerprint: dict) -> dict:
        return {
            "version": STATE_VERSION,
            "fingerprint": fingerprint,
            "done": self.done,
            "matrices": {k: m.to_list() for k, m in self.matrices.items()},
            "agreements": {k: a.as_dict()["counts"] for k, a in self.agreements.items()},
            "seconds": self.seconds,
            "wall_seconds": self.wall_seconds,
        }

    @classmethod
    def from_json(cls, data: dict) -> _Progress:
        return cls(
            done=int(data["done"]),
            matrices={k: ConfusionMatrix.from_list(v) for k, v in data["matrices"].items()},
            agreements={k: Agreement(*v) for k, v in data["agreements"].items()},
            seconds={k: float(v) for k, v in data["seconds"].items()},
            wall_seconds=float(data["wall_seconds"]),
        )


def _write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _load_state(path: Path, fingerprint: dict) -> _Progress | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RadsegError(f"the saved evaluation state {path} is unreadable ({exc}); delete it or pass --restart") from None
    if data.get("version") != STATE_VERSION or data.get("fingerprint") != fingerprint:
        raise RadsegError(
            f"the saved evaluation state {path} belongs to a different run (dataset, root, setting, limit or "
            "sources differ); pass --restart to discard it, or a different --state path"
        )
    return _Progress.from_json(data)


def _pair_name(a: str, b: str) -> str:
    return f"{a} vs {b}"


def _make_bar(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="img", dynamic_ncols=True, disable=not enabled, file=sys.stderr)


def evaluate(
    dataset: SegDataset,
    sources: Sequence[LabelSource],
    *,
    limit: int | None = None,
    state_path: str | Path | None = None,
    restart: bool = False,
    save_every: int = 20,
    progress: bool = True,
    save_predictions: str | Path | None = None,
    run_info: dict | None = None,
) -> dict:
    """Score each source on the first ``limit`` samples (all when None); returns the JSON-ready report.

    Report: ``dataset``, ``num_classes``, ``num_images``, ``class_names``, ``run`` (``run_info``), ``results``
    (per source: miou, pixel_accuracy, mean_accuracy, per_class_iou in %, nan classes as null;
    images_per_s of the source alone) and ``agreement`` (per pair of sources: % equal labels over all
    pixels and over scored pixels). With ``save_predictions``, each source's label maps are written as
    PNGs readable by :func:`folder_source` (``DIR/<name>.png``, or ``DIR/<source>/<name>.png`` for several).
    """
    if not sources:
        raise RadsegError("nothing to evaluate: give a model or a predictions folder")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise RadsegError(f"the compared sources need distinct names, got {names}")
    samples = dataset.samples if limit is None else dataset.samples[: max(limit, 0)]
    fingerprint = {
        "dataset": dataset.name,
        "root": str(dataset.root.resolve()),
        "num_images": len(samples),
        "run": run_info or {},
        "sources": [{"name": s.name, **s.description} for s in sources],
    }
    # compared as saved: after a JSON round trip (tuples become lists, keys strings), or no run would ever resume
    fingerprint = json.loads(json.dumps(fingerprint, default=str))
    state_file = Path(state_path) if state_path else None
    if state_file is not None and restart and state_file.exists():
        state_file.unlink()
    state = _load_state(state_file, fingerprint) if state_file is not None else None
    resumed_from = state.done if state else 0
    if state is None:
        state = _Progress(
            matrices={n: ConfusionMatrix(dataset.num_classes, IGNORE_LABEL) for n in names},
            agreements={_pair_name(a, b): Agreement() for a, b in combinations(names, 2)},
            seconds=dict.fromkeys(names, 0.0),
        )
    out_dirs = None
    if save_predictions is not None:
        base = Path(save_predictions)
        out_dirs = {n: base if len(names) == 1 else base / n.replace("/", "_").replace(":", "_") for n in names}

    bar = _make_bar(len(samples), state.done, progress)
    last_save = state.done
    started = time.perf_counter()
    wall_before = state.wall_seconds
    try:
        for sample in samples[state.done :]:
            image_cache: list[np.ndarray] = []

            def get_image(sample=sample, cache=image_cache) -> np.ndarray:
                if not cache:
                    cache.append(dataset.load_image(sample))
                return cache[0]

            ground_truth = dataset.load_label(sample)
            labels = {}
            for source in sources:
                t0 = time.perf_counter()
                labels[source.name] = pred = np.asarray(source.predict(sample, get_image))
                state.seconds[source.name] += time.perf_counter() - t0
                if pred.shape != ground_truth.shape:
                    raise RadsegError(
                        f"{source.name} gave a label map of shape {tuple(pred.shape)} for '{sample.name}', whose "
                        f"ground truth is {tuple(ground_truth.shape)}: predictions must be at the original image size"
                    )
            # counts change only once every source has predicted, so an interrupted image is not half-counted
            scored = ground_truth != IGNORE_LABEL
            for name, pred in labels.items():
                state.matrices[name].update(pred, ground_truth)
                if out_dirs is not None:
                    write_label_png(prediction_path(out_dirs[name], sample), pred)
            for a, b in combinations(names, 2):
                state.agreements[_pair_name(a, b)].update(labels[a], labels[b], scored)
            state.done += 1
            state.wall_seconds = wall_before + time.perf_counter() - started
            bar.update(1)
            first = state.matrices[names[0]].scores()
            bar.set_postfix(mIoU=f"{first.miou * 100:.2f}", refresh=False)
            if state_file is not None and state.done - last_save >= save_every:
                _write_json_atomic(state_file, state.to_json(fingerprint))
                last_save = state.done
    except BaseException:
        if state_file is not None and state.done > last_save:
            _write_json_atomic(state_file, state.to_json(fingerprint))
        raise
    finally:
        bar.close()
    if state_file is not None and state_file.exists():
        state_file.unlink()
    return _report(dataset, samples, sources, state, resumed_from, run_info)


def _report(dataset, samples, sources, state: _Progress, resumed_from: int, run_info: dict | None) -> dict:
    results = {}
    for source in sources:
        entry = state.matrices[source.name].scores().as_dict(dataset.class_names)
        secs = state.seconds[source.name]
        entry["images_per_s"] = round(state.done / secs, 4) if secs > 0 else None
        entry["source"] = source.description
        results[source.name] = entry
    return {
        "dataset": dataset.name,
        "root": str(dataset.root),
        "num_classes": dataset.num_classes,
        "num_images": len(samples),
        "resumed_from": resumed_from,
        "wall_images_per_s": round(state.done / state.wall_seconds, 4) if state.wall_seconds > 0 else None,
        "run": run_info or {},
        "class_names": dataset.class_names,
        "results": results,
        "agreement": {k: a.as_dict() for k, a in state.agreements.items()},
    }


def write_report(path: str | Path, report: dict) -> None:
    """Write the report as indented JSON (atomically)."""
    _write_json_atomic(Path(path), report)


def format_summary(report: dict) -> str:
    """A few human-readable lines: mIoU / pixel accuracy / images/s per source, agreement per pair."""
    lines = [f"{report['dataset']}: {report['num_images']} images, {report['num_classes']} classes"]
    def num(x: float | None, digits: int = 2) -> str:
        return "n/a" if x is None else f"{x:.{digits}f}"

    for name, r in report["results"].items():
        lines.append(
            f"  {name}: mIoU {num(r['miou'])}  pixel acc {num(r['pixel_accuracy'])}  {num(r['images_per_s'])} images/s"
        )
    for pair, a in report["agreement"].items():
        lines.append(
            f"  agreement {pair}: {num(a['all_pixels'], 4)}% of pixels ({num(a['scored_pixels'], 4)}% of scored pixels)"
        )
    return "\n".join(lines)
