"""Readers for the five background-free benchmarks of the paper, in their standard (mmseg) folder layouts.

Every reader yields :class:`Sample` items (an image path and a ground-truth path) and maps the stored
label values to the training-free OVSS convention: class ids ``0..K-1`` and ``IGNORE_LABEL`` (255).

================  ========================================================================  ===============
name              layout under ``--root``                                                   label mapping
================  ========================================================================  ===============
voc20             ``JPEGImages/*.jpg``, ``SegmentationClass/*.png``,                        zero reduction
                  ``ImageSets/Segmentation/val.txt`` (VOC2012)
context59         ``JPEGImages/*.jpg``, ``SegmentationClassContext/*.png``,                 zero reduction
                  ``ImageSets/SegmentationContext/val.txt`` (VOC2010)
coco-stuff171     ``images/val2017/*.jpg``, ``annotations/val2017/*_labelTrainIds.png``     identity
cityscapes        ``leftImg8bit/val/<city>/*_leftImg8bit.png``,                             identity
                  ``gtFine/val/<city>/*_gtFine_labelTrainIds.png``
ade20k            ``images/validation/*.jpg``, ``annotations/validation/*.png``             zero reduction
                  (ADEChallengeData2016)
================  ========================================================================  ===============

"Zero reduction" (mmseg's ``reduce_zero_label``): stored 0 (background / unlabelled) becomes 255,
every other value v becomes v - 1, and a stored 255 stays 255.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from radseg_edge.errors import RadsegError
from radseg_edge.eval.labelmaps import read_image_rgb, read_label_png

#: ground-truth value of pixels that are not scored.
IGNORE_LABEL = 255


class DatasetError(RadsegError):
    """A dataset folder does not have the expected layout, or a label map has values outside the class ids."""


@dataclass(frozen=True)
class Sample:
    """One evaluation image: ``name`` is unique within the split (may contain '/', e.g. Cityscapes' city)."""

    name: str
    image_path: Path
    label_path: Path


@dataclass
class SegDataset:
    """A validation split: samples, class names and the label mapping.

    ``load_label`` returns H x W int64 class ids in ``0..K-1`` and ``IGNORE_LABEL``.
    """

    name: str
    root: Path
    samples: list[Sample]
    class_names: list[str]
    reduce_zero_label: bool
    layout: str = field(repr=False, default="")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def load_image(self, sample: Sample) -> np.ndarray:
        """H x W x 3 uint8 RGB at the original size."""
        return read_image_rgb(sample.image_path)

    def load_label(self, sample: Sample) -> np.ndarray:
        """H x W int64: class ids 0..K-1, IGNORE_LABEL where not scored."""
        raw = read_label_png(sample.label_path)
        labels = map_labels(raw, self.reduce_zero_label)
        bad = (labels >= self.num_classes) & (labels != IGNORE_LABEL)
        if bad.any():
            first, last = (1, self.num_classes) if self.reduce_zero_label else (0, self.num_classes - 1)
            raise DatasetError(
                f"{sample.label_path} holds the label value {int(raw[bad][0])}; {self.name} label maps hold "
                f"{first}..{last} and {IGNORE_LABEL}{' (0 = unlabelled)' if self.reduce_zero_label else ''}. "
                f"Is it the converted file? Expected layout: {self.layout}"
            )
        return labels


def map_labels(raw: np.ndarray, reduce_zero_label: bool) -> np.ndarray:
    """Stored label values -> class ids (int64). With ``reduce_zero_label``: 0 -> 255, v -> v-1, 255 -> 255."""
    labels = raw.astype(np.int64)
    if reduce_zero_label:
        labels = np.where((labels == 0) | (labels == IGNORE_LABEL), IGNORE_LABEL, labels - 1)
    return labels


def load_class_names(dataset: str) -> list[str]:
    """The packaged class-name list of a benchmark (one name per line, training-free OVSS convention)."""
    spec = _spec(dataset)
    text = (resources.files("radseg_edge") / "data" / spec.names_file).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_class_names(path: str | Path) -> list[str]:
    """Class names from a text file, one per line (blank lines skipped)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"cannot read the class-name file {path}: {exc.strerror}") from exc
    return [line.strip() for line in text.splitlines() if line.strip()]


# --------------------------------------------------------------------------------------------------
# layouts


def _read_split(list_file: Path, image_dir: Path, image_suffix: str, label_dir: Path, label_suffix: str) -> list[Sample]:
    names = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
    return [
        Sample(name, image_dir / f"{name}{image_suffix}", label_dir / f"{name}{label_suffix}") for name in names
    ]


def _scan_pairs(image_dir: Path, image_suffix: str, label_dir: Path, label_suffix: str) -> list[Sample]:
    samples = []
    for image_path in sorted(image_dir.rglob(f"*{image_suffix}")):
        name = image_path.relative_to(image_dir).as_posix()[: -len(image_suffix)]
        samples.append(Sample(name, image_path, label_dir / f"{name}{label_suffix}"))
    return samples


def _voc_like(segmentation_dir: str, split_dir: str) -> Callable[[Path], list[Sample]]:
    def build(root: Path) -> list[Sample]:
        return _read_split(
            root / "ImageSets" / split_dir / "val.txt", root / "JPEGImages", ".jpg", root / segmentation_dir, ".png"
        )

    return build


def _cityscapes(root: Path) -> list[Sample]:
    return _scan_pairs(root / "leftImg8bit" / "val", "_leftImg8bit.png", root / "gtFine" / "val", "_gtFine_labelTrainIds.png")


@dataclass(frozen=True)
class _DatasetSpec:
    names_file: str
    reduce_zero_label: bool
    layout: str
    required: tuple[str, ...]  # paths that must exist under the resolved root
    subfolders: tuple[str, ...]  # where the layout may sit under the given root
    build: Callable[[Path], list[Sample]]
    hint: str  # how to obtain the layout


_SPECS: dict[str, _DatasetSpec] = {
    "voc20": _DatasetSpec(
        "classes_voc20.txt",
        True,
        "VOC2012/{JPEGImages/*.jpg, SegmentationClass/*.png, ImageSets/Segmentation/val.txt}",
        ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation/val.txt"),
        ("", "VOC2012", "VOCdevkit/VOC2012"),
        _voc_like("SegmentationClass", "Segmentation"),
        "the PASCAL VOC 2012 trainval archive (VOCtrainval_11-May-2012.tar)",
    ),
    "context59": _DatasetSpec(
        "classes_context59.txt",
        True,
        "VOC2010/{JPEGImages/*.jpg, SegmentationClassContext/*.png, ImageSets/SegmentationContext/val.txt}",
        ("JPEGImages", "SegmentationClassContext", "ImageSets/SegmentationContext/val.txt"),
        ("", "VOC2010", "VOCdevkit/VOC2010"),
        _voc_like("SegmentationClassContext", "SegmentationContext"),
        "VOC2010 trainval plus trainval_merged.json converted by mmsegmentation's tools/dataset_converters/pascal_context.py",
    ),
    "coco-stuff171": _DatasetSpec(
        "classes_coco_stuff171.txt",
        False,
        "coco_stuff164k/{images/val2017/*.jpg, annotations/val2017/*_labelTrainIds.png}",
        ("images/val2017", "annotations/val2017"),
        ("", "coco_stuff164k"),
        lambda root: _scan_pairs(root / "images" / "val2017", ".jpg", root / "annotations" / "val2017", "_labelTrainIds.png"),
        "COCO val2017 images and stuffthingmaps_trainval2017.zip converted by mmsegmentation's "
        "tools/dataset_converters/coco_stuff164k.py",
    ),
    "cityscapes": _DatasetSpec(
        "classes_cityscapes.txt",
        False,
        "cityscapes/{leftImg8bit/val/<city>/*_leftImg8bit.png, gtFine/val/<city>/*_gtFine_labelTrainIds.png}",
        ("leftImg8bit/val", "gtFine/val"),
        ("", "cityscapes"),
        _cityscapes,
        "leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip, with *_labelTrainIds.png made by cityscapesscripts' "
        "createTrainIdLabelImgs (or mmsegmentation's tools/dataset_converters/cityscapes.py)",
    ),
    "ade20k": _DatasetSpec(
        "classes_ade20k.txt",
        True,
        "ADEChallengeData2016/{images/validation/*.jpg, annotations/validation/*.png}",
        ("images/validation", "annotations/validation"),
        ("", "ADEChallengeData2016"),
        lambda root: _scan_pairs(root / "images" / "validation", ".jpg", root / "annotations" / "validation", ".png"),
        "ADEChallengeData2016.zip (the SceneParsing benchmark)",
    ),
}

#: the benchmark names accepted by ``--dataset``.
DATASET_NAMES: tuple[str, ...] = tuple(_SPECS)


def _spec(dataset: str) -> _DatasetSpec:
    try:
        return _SPECS[dataset]
    except KeyError:
        raise DatasetError(f"unknown dataset '{dataset}': expected one of {', '.join(_SPECS)}") from None


def _resolve_root(root: Path, spec: _DatasetSpec) -> Path | None:
    for sub in spec.subfolders:
        candidate = root / sub if sub else root
        if all((candidate / p).exists() for p in spec.required):
            return candidate
    return None


def open_dataset(dataset: str, root: str | Path, class_names: list[str] | None = None) -> SegDataset:
    """Find a benchmark's validation split under ``root`` and check its layout.

    ``root`` may be the layout's own folder (e.g. ``.../VOCdevkit/VOC2012``) or a parent listed in the
    table of this module (e.g. ``.../VOCdevkit``). ``class_names`` overrides the packaged list (same count).
    Raises :class:`DatasetError` naming the expected layout when the folder does not match, a listed image
    or label file is missing, or the split is empty.
    """
    spec = _spec(dataset)
    given = Path(root).expanduser()
    resolved = _resolve_root(given, spec)
    where = f"Expected layout: {spec.layout} (from {spec.hint})"
    if resolved is None:
        tried = ", ".join(str(given / s) if s else str(given) for s in spec.subfolders)
        missing = [p for p in spec.required if not (given / p).exists()]
        raise DatasetError(
            f"{given} is not a {dataset} folder: {', '.join(missing)} not found (looked in {tried}). {where}"
        )
    samples = spec.build(resolved)
    if not samples:
        raise DatasetError(f"{resolved} holds no {dataset} validation images. {where}")
    for sample in samples:
        for path, what in ((sample.image_path, "image"), (sample.label_path, "label map")):
            if not path.is_file():
                raise DatasetError(f"the {what} of '{sample.name}' is missing: {path}. {where}")
    names = load_class_names(dataset)
    if class_names is not None:
        if len(class_names) != len(names):
            raise DatasetError(
                f"{dataset} has {len(names)} classes but {len(class_names)} class names were given"
            )
        names = list(class_names)
    return SegDataset(dataset, resolved, samples, names, spec.reduce_zero_label, spec.layout)
