"""Dataset readers: standard layouts on disk, label mappings, class lists, errors naming the layout."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from radseg_edge.eval.datasets import (
    DATASET_NAMES,
    IGNORE_LABEL,
    DatasetError,
    load_class_names,
    map_labels,
    open_dataset,
)
from radseg_edge.eval.labelmaps import LabelMapError, read_label_png, write_label_png
from tests.eval_layouts import (
    make_ade,
    make_cityscapes,
    make_coco_stuff,
    make_context,
    make_voc,
    write_palette_png,
)

I = IGNORE_LABEL  # noqa: E741


def test_palette_png_reads_back_indices_not_colours(tmp_path):
    stored = np.array([[0, 1, 15, 255], [20, 0, 255, 7]], dtype=np.uint8)
    write_palette_png(tmp_path / "l.png", stored)
    assert cv2.imread(str(tmp_path / "l.png"), cv2.IMREAD_UNCHANGED).ndim == 3  # OpenCV alone gives colours
    np.testing.assert_array_equal(read_label_png(tmp_path / "l.png"), stored)


def test_label_png_roundtrip_8_and_16_bit(tmp_path):
    small = np.array([[0, 5], [-1, 170]])
    write_label_png(tmp_path / "a.png", small)
    np.testing.assert_array_equal(read_label_png(tmp_path / "a.png"), [[0, 5], [255, 170]])
    assert read_label_png(tmp_path / "a.png").dtype == np.uint8
    big = np.array([[0, 300], [1000, 2]])
    write_label_png(tmp_path / "b.png", big)
    np.testing.assert_array_equal(read_label_png(tmp_path / "b.png"), big)


def test_colour_label_map_is_rejected(tmp_path):
    cv2.imwrite(str(tmp_path / "rgb.png"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(LabelMapError, match="colour channels"):
        read_label_png(tmp_path / "rgb.png")


def test_zero_label_reduction_maps_background_to_ignore_and_shifts_classes():
    raw = np.array([0, 1, 2, 20, 255], dtype=np.uint8)
    np.testing.assert_array_equal(map_labels(raw, True), [I, 0, 1, 19, I])
    np.testing.assert_array_equal(map_labels(raw, False), [0, 1, 2, 20, 255])


def test_voc20_reads_val_list_and_palette_labels(tmp_path):
    a = np.array([[0, 1, 1], [15, 255, 20]], np.uint8)  # background, aeroplane, person, boundary, tvmonitor
    b = np.full((4, 5), 8, np.uint8)
    make_voc(tmp_path, {"2007_000033": a, "2007_000042": b})
    ds = open_dataset("voc20", tmp_path / "VOCdevkit")  # the parent folder is accepted too
    assert ds.root.name == "VOC2012"
    assert [s.name for s in ds] == ["2007_000033", "2007_000042"]  # val.txt order, train image not read
    np.testing.assert_array_equal(ds.load_label(ds.samples[0]), [[I, 0, 0], [14, I, 19]])
    assert ds.class_names[14] == "person" and ds.class_names[19] == "tvmonitor"
    image = ds.load_image(ds.samples[1])
    assert image.shape == (4, 5, 3) and image.dtype == np.uint8


def test_context59_reduces_zero_label(tmp_path):
    lab = np.array([[0, 1, 59], [37, 0, 2]], np.uint8)
    make_context(tmp_path, {"2008_000002": lab})
    ds = open_dataset("context59", tmp_path / "VOCdevkit" / "VOC2010")
    assert ds.num_classes == 59
    np.testing.assert_array_equal(ds.load_label(ds.samples[0]), [[I, 0, 58], [36, I, 1]])
    assert ds.class_names[36] == "person" and ds.class_names[58] == "wood"


def test_coco_stuff171_uses_label_train_ids_unchanged(tmp_path):
    lab = np.array([[0, 170, 255], [58, 91, 0]], np.uint8)
    make_coco_stuff(tmp_path, {"000000000139": lab, "000000000285": lab[::-1]})
    ds = open_dataset("coco-stuff171", tmp_path)
    assert [s.name for s in ds] == ["000000000139", "000000000285"]
    np.testing.assert_array_equal(ds.load_label(ds.samples[0]), lab.astype(np.int64))
    assert ds.class_names[0] == "person" and ds.class_names[170] == "wood" and ds.num_classes == 171


def test_cityscapes_scans_cities_and_reads_train_ids(tmp_path):
    lab = np.array([[0, 18, 255], [10, 13, 11]], np.uint8)
    make_cityscapes(
        tmp_path,
        {"frankfurt/frankfurt_000000_000294": lab, "lindau/lindau_000000_000019": lab, "munster/munster_000000_000019": lab},
    )
    ds = open_dataset("cityscapes", tmp_path / "cityscapes")
    assert [s.name for s in ds] == [
        "frankfurt/frankfurt_000000_000294",
        "lindau/lindau_000000_000019",
        "munster/munster_000000_000019",
    ]
    assert ds.samples[0].label_path.name == "frankfurt_000000_000294_gtFine_labelTrainIds.png"
    np.testing.assert_array_equal(ds.load_label(ds.samples[2]), lab.astype(np.int64))
    assert ds.class_names[:3] == ["road", "sidewalk", "building"] and ds.num_classes == 19


def test_ade20k_reduces_zero_label(tmp_path):
    lab = np.array([[0, 1, 150], [13, 0, 2]], np.uint8)
    make_ade(tmp_path, {"ADE_val_00000001": lab})
    ds = open_dataset("ade20k", tmp_path)
    np.testing.assert_array_equal(ds.load_label(ds.samples[0]), [[I, 0, 149], [12, I, 1]])
    assert ds.class_names[0] == "wall" and ds.class_names[12] == "person" and ds.num_classes == 150


@pytest.mark.parametrize("dataset", DATASET_NAMES)
def test_wrong_folder_names_the_expected_layout(tmp_path, dataset):
    (tmp_path / "something").mkdir()
    with pytest.raises(DatasetError, match="Expected layout: .*") as info:
        open_dataset(dataset, tmp_path)
    assert "not a " + dataset in str(info.value)


def test_missing_label_file_is_reported(tmp_path):
    base = make_voc(tmp_path, {"a": np.zeros((2, 2), np.uint8), "b": np.zeros((2, 2), np.uint8)})
    (base / "SegmentationClass" / "b.png").unlink()
    with pytest.raises(DatasetError, match="label map of 'b' is missing"):
        open_dataset("voc20", base)


def test_unconverted_labels_are_rejected_with_the_expected_values(tmp_path):
    # raw COCO-Stuff ids go up to 182; the labelTrainIds conversion is required
    make_coco_stuff(tmp_path, {"x": np.array([[182, 0]], np.uint8)})
    ds = open_dataset("coco-stuff171", tmp_path)
    with pytest.raises(DatasetError, match="label value 182.*0..170 and 255"):
        ds.load_label(ds.samples[0])


def test_unknown_dataset_lists_the_known_ones(tmp_path):
    with pytest.raises(DatasetError, match="voc20, context59, coco-stuff171, cityscapes, ade20k"):
        open_dataset("voc21", tmp_path)


@pytest.mark.parametrize(
    ("dataset", "count", "some"),
    [
        ("voc20", 20, ["aeroplane", "pottedplant", "tvmonitor"]),
        ("context59", 59, ["bedclothes", "pottedplant", "wood"]),
        ("coco-stuff171", 171, ["person", "teddy bear", "window-other"]),
        ("cityscapes", 19, ["traffic light", "bicycle"]),
        ("ade20k", 150, ["bed", "chest of drawers", "flag"]),
    ],
)
def test_packaged_class_lists(dataset, count, some):
    names = load_class_names(dataset)
    assert len(names) == count == len(set(names))
    assert all(n in names for n in some)
    assert all(n == n.strip() and n for n in names)
