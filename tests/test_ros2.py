"""ROS 2 without ROS: message conversions for every encoding (CDR round trips through the humble and jazzy
typestores of rosbags), labels / LabelInfo / QoS / parameters / diagnostics, and `radseg-edge bag` on bags
this test writes (MCAP and sqlite3), compared with `segment` on the same frames."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import torch
from PIL import Image as PILImage

pytest.importorskip("rosbags")

from rosbags.rosbag2 import Reader, StoragePlugin, Writer  # noqa: E402

from radseg_edge.cli import main  # noqa: E402
from radseg_edge.errors import InputError  # noqa: E402
from radseg_edge.models.text import Vocabulary  # noqa: E402
from radseg_edge.ros2 import convert as cv  # noqa: E402
from radseg_edge.ros2.diagnostics import TimingWindow, diagnostic_array, diagnostic_status  # noqa: E402
from radseg_edge.ros2.params import NodeParams, parse_params, qos_profile, rosbags_qos  # noqa: E402
from radseg_edge.ros2.types import DISTROS, deserialize, rosbags_messages, serialize, typestore  # noqa: E402
from radseg_edge.runtime.image_io import load_image  # noqa: E402
from tests.conftest import TINY_CKPT  # noqa: E402

H, W = 64, 96
RNG = np.random.default_rng(3)
RGB = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
#: 16-bit versions whose / 257 rounding gives RGB back (offsets below half a step).
RGB16 = np.clip(RGB.astype(np.int32) * 257 + RNG.integers(-100, 101, RGB.shape), 0, 65535).astype(np.uint16)
GRAY = cv2.cvtColor(RGB, cv2.COLOR_RGB2GRAY)
GRAY16 = np.clip(GRAY.astype(np.int32) * 257 + RNG.integers(-100, 101, GRAY.shape), 0, 65535).astype(np.uint16)


def _raw(enc: str) -> tuple[np.ndarray, np.ndarray]:
    """(data array in ``enc``'s layout, the RGB frame it must decode to)."""
    gray3 = np.repeat(GRAY[..., None], 3, axis=2)
    alpha8 = np.full((H, W, 1), 7, np.uint8)
    table = {
        "rgb8": (RGB, RGB), "bgr8": (RGB[..., ::-1], RGB), "8UC3": (RGB[..., ::-1], RGB),
        "rgba8": (np.concatenate([RGB, alpha8], 2), RGB), "bgra8": (np.concatenate([RGB[..., ::-1], alpha8], 2), RGB),
        "mono8": (GRAY, gray3), "8UC1": (GRAY, gray3),
        "rgb16": (RGB16, RGB), "bgr16": (RGB16[..., ::-1], RGB),
        "rgba16": (np.concatenate([RGB16, alpha8.astype(np.uint16)], 2), RGB),
        "bgra16": (np.concatenate([RGB16[..., ::-1], alpha8.astype(np.uint16)], 2), RGB),
        "mono16": (GRAY16, gray3), "16UC1": (GRAY16, gray3),
    }
    return table[enc]


def _image_msg(msgs, data: np.ndarray, enc: str, header, bigendian: bool = False, pad: int = 0):
    h, w = data.shape[:2]
    a = np.ascontiguousarray(data).astype(data.dtype.newbyteorder(">" if bigendian else "<"))
    rows = a.view(np.uint8).reshape(h, -1)
    if pad:
        rows = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    return msgs.Image(header=header, height=h, width=w, encoding=enc, is_bigendian=int(bigendian),
                      step=rows.shape[1], data=msgs.byte_array(rows.reshape(-1)))


@pytest.mark.parametrize("distro", DISTROS)
@pytest.mark.parametrize("enc", list(cv.ENCODINGS))
def test_every_input_encoding_decodes_to_rgb_after_a_cdr_round_trip(enc, distro):
    msgs = rosbags_messages(distro)
    data, want = _raw(enc)
    for big, pad in ((False, 0), (True, 0), (False, 13)):
        if big and data.dtype != np.uint16:
            continue
        msg = _image_msg(msgs, data, enc, cv.header(msgs, 5, 6, "cam"), bigendian=big, pad=pad)
        back = deserialize(serialize(msg, distro), msg.__msgtype__, distro)
        rgb = cv.image_to_rgb(back)
        assert rgb.dtype == np.uint8 and rgb.shape == (H, W, 3)
        np.testing.assert_array_equal(rgb, want, err_msg=f"{enc} big-endian={big} pad={pad}")


def test_16bit_messages_convert_like_16bit_image_files(tmp_path):
    msgs = rosbags_messages()
    for enc, arr, bgr_file in (("rgb16", RGB16, RGB16[..., ::-1]), ("mono16", GRAY16, GRAY16)):
        f = tmp_path / f"{enc}.png"
        cv2.imwrite(str(f), bgr_file)
        from_file, note = load_image(f)
        assert "16-bit" in note
        np.testing.assert_array_equal(cv.image_to_rgb(_image_msg(msgs, arr, enc, cv.header(msgs, 0, 0, ""))), from_file)


@pytest.mark.parametrize("fmt", ["jpeg", "png", "png16"])
def test_compressed_images_decode_like_files(tmp_path, fmt):
    msgs = rosbags_messages("jazzy")
    ext, arr = {"jpeg": (".jpg", RGB[..., ::-1]), "png": (".png", RGB[..., ::-1]), "png16": (".png", RGB16[..., ::-1])}[fmt]
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(arr))
    assert ok
    (tmp_path / f"x{ext}").write_bytes(buf.tobytes())
    msg = msgs.CompressedImage(header=cv.header(msgs, 1, 2, "cam"), format=fmt, data=buf.reshape(-1))
    back = deserialize(serialize(msg, "jazzy"), msg.__msgtype__, "jazzy")
    np.testing.assert_array_equal(cv.message_to_rgb(back), load_image(tmp_path / f"x{ext}")[0])
    if fmt != "jpeg":
        np.testing.assert_array_equal(cv.message_to_rgb(back), RGB)
    bad = msgs.CompressedImage(header=msg.header, format="jpeg", data=np.frombuffer(b"not a jpeg", np.uint8))
    with pytest.raises(InputError, match="could not decode"):
        cv.message_to_rgb(bad)


def test_unsupported_or_inconsistent_images_are_refused():
    msgs = rosbags_messages()
    hdr = cv.header(msgs, 0, 0, "")
    yuv = msgs.Image(header=hdr, height=2, width=2, encoding="yuv422", is_bigendian=0, step=4, data=np.zeros(8, np.uint8))
    with pytest.raises(InputError, match="yuv422.*not supported"):
        cv.image_to_rgb(yuv)
    short = msgs.Image(header=hdr, height=4, width=4, encoding="rgb8", is_bigendian=0, step=12, data=np.zeros(40, np.uint8))
    with pytest.raises(InputError, match="do not fit"):
        cv.image_to_rgb(short)
    with pytest.raises(InputError, match="mono8"):
        cv.array_to_image(msgs, np.zeros((2, 2), np.uint16), "mono8", hdr)


@pytest.mark.parametrize("distro", DISTROS)
def test_label_images_mono8_then_mono16_with_documented_no_class_values(distro):
    msgs = rosbags_messages(distro)
    hdr = cv.header(msgs, 10, 20, "camera_optical")
    labels = RNG.integers(-1, 5, (H, W))
    msg = deserialize(serialize(cv.labels_to_image(msgs, labels, 5, hdr), distro), "sensor_msgs/msg/Image", distro)
    assert msg.encoding == "mono8" and msg.header.frame_id == "camera_optical" and msg.header.stamp.sec == 10
    raw = cv.image_to_array(msg)
    assert raw[labels < 0].tolist() == [cv.NO_CLASS_MONO8] * int((labels < 0).sum())
    np.testing.assert_array_equal(cv.image_to_labels(msg), labels)
    big = RNG.integers(-1, 300, (H, W))
    msg16 = deserialize(serialize(cv.labels_to_image(msgs, big, 300, hdr), distro), "sensor_msgs/msg/Image", distro)
    assert msg16.encoding == "mono16" and cv.image_to_array(msg16)[big < 0].max() == cv.NO_CLASS_MONO16
    np.testing.assert_array_equal(cv.image_to_labels(msg16), big)
    assert cv.labels_encoding(255) == "mono8" and cv.labels_encoding(256) == "mono16"
    with pytest.raises(InputError, match="mono16"):
        cv.labels_encoding(70000)


@pytest.mark.parametrize("distro", DISTROS)
def test_confidence_and_label_info_round_trip(distro):
    msgs = rosbags_messages(distro)
    assert "vision_msgs/msg/LabelInfo" in typestore(distro).types
    hdr = cv.header(msgs, 3, 4, "cam")
    probs = torch.softmax(torch.randn(1, 4, H, W), 1)
    conf = deserialize(serialize(cv.confidence_to_image(msgs, probs, hdr), distro), "sensor_msgs/msg/Image", distro)
    assert conf.encoding == "32FC1" and conf.step == W * 4
    np.testing.assert_allclose(cv.image_to_array_f32(conf), probs[0].max(0).values.numpy())
    names = ["sky", "road", "a car, parked"]
    info = deserialize(serialize(cv.label_info(msgs, names, hdr, 0.25), distro), "vision_msgs/msg/LabelInfo", distro)
    assert cv.class_map(info) == dict(enumerate(names))
    assert info.threshold == pytest.approx(0.25) and info.header.frame_id == "cam"


def test_qos_profiles_and_parameters_are_validated_without_ros():
    assert qos_profile("sensor_data") == qos_profile("SENSOR_DATA", 1)
    assert qos_profile("SENSOR_DATA").reliability == "best_effort" and qos_profile("LATCHED").durability == "transient_local"
    assert qos_profile("DEFAULT", 5).depth == 5
    q = rosbags_qos(qos_profile("LATCHED"))
    assert q.durability.name == "TRANSIENT_LOCAL" and q.reliability.name == "RELIABLE" and q.depth == 1
    for bad, match in ((("fast",), "QoS profile 'fast'"), (("DEFAULT", 0), "qos_depth")):
        with pytest.raises(InputError, match=match):
            qos_profile(*bad)
    p = parse_params({"checkpoint": "c.pth.tar", "classes": "a, b", "crop": 224, "stride": 112, "alpha": 1,
                      "publish_confidence": "true", "vocab": "x.safetensors, y.safetensors"})
    assert isinstance(p, NodeParams) and p.alpha == 1.0 and p.publish_confidence is True
    assert p.vocab == ["x.safetensors", "y.safetensors"] and p.input_qos_spec.reliability == "best_effort"
    assert p.output_qos_spec.reliability == "reliable" and p.qos_depth == 1
    assert p.radseg_options() == {"crop": 224, "stride": 112, "precision": "fp32", "prediction_thresh": 0.0}
    assert parse_params({"engine_file_path": "exp", "classes": "a"}).export_dir == "exp"  # Isaac ROS alias
    base = {"checkpoint": "c", "classes": "a"}
    for extra, match in (({"crop_size": 3}, "unknown parameter 'crop_size'"), ({"crop": "big"}, "crop: expected int"),
                         ({"crop": True}, "crop: expected int"), ({"alpha": 2.0}, "alpha"),
                         ({"stride": 400}, "stride"), ({"backend": "cuda"}, "backend 'cuda'"),
                         ({"backend": "tensorrt"}, "export_dir"), ({"input_qos": "x"}, "QoS profile 'x'"),
                         ({"precision": "int4"}, "precision"), ({"qos_depth": 0}, "qos_depth"),
                         ({"classes": ""}, "no classes"), ({"checkpoint": ""}, "no model")):
        with pytest.raises(InputError, match=match):
            parse_params({**base, **extra})


@pytest.mark.parametrize("distro", DISTROS)
def test_diagnostics_carry_per_stage_timings(distro):
    msgs = rosbags_messages(distro)
    window = TimingWindow(size=3)
    empty = diagnostic_status(msgs, window, "radseg", "cpu")
    assert empty.level == 3  # STALE before the first frame
    for ms in (10.0, 20.0, 30.0, 40.0):
        window.add({"decode": 1.0, "backbone": ms})
    st = diagnostic_status(msgs, window, "radseg_edge: segmentation", "cpu", extra={"backend": "torch"}, fps=12.5)
    arr = diagnostic_array(msgs, cv.header(msgs, 1, 0, ""), [st])
    back = deserialize(serialize(arr, distro), "diagnostic_msgs/msg/DiagnosticArray", distro)
    values = {kv.key: kv.value for kv in back.status[0].values}
    assert back.status[0].level == 0 and "4 frames" in back.status[0].message
    assert values["backbone_p50_ms"] == "30.000" and values["backbone_mean_ms"] == "30.000"  # the last 3 frames
    assert values["frames"] == "4" and values["fps"] == "12.50" and values["backend"] == "torch"


# ----- radseg-edge bag -----

FRAMES = [("rgb8", 0), ("bgr8", 1), ("mono8", 2), ("mono16", 3), ("rgb8", 4)]


def _frame(enc: str, i: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(100 + i)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return {"rgb8": (rgb, rgb[..., ::-1]), "bgr8": (rgb[..., ::-1], rgb[..., ::-1]),
            "mono8": (gray, gray), "mono16": (gray.astype(np.uint16) * 257, gray.astype(np.uint16) * 257)}[enc]


def _write_bag(path, storage: str, distro: str = "humble"):
    store, msgs = typestore(distro), rosbags_messages(distro)
    w = Writer(path, version=9 if distro == "jazzy" else 8,
               storage_plugin=StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3)
    w.open()
    cam = w.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=store)
    chat = w.add_connection("/chatter", "std_msgs/msg/String", typestore=store)
    for i, (enc, _) in enumerate(FRAMES):
        data, _ = _frame(enc, i)
        hdr = cv.header(msgs, 100 + i, 5000 * i, f"cam_{i}")
        w.write(cam, (1000 + i) * 10**9, serialize(_image_msg(msgs, data, enc, hdr), distro))
        w.write(chat, (1000 + i) * 10**9 + 1, serialize(msgs.String(data=f"hello {i}"), distro))
    w.close()


def _read_bag(path, distro="humble"):
    store = typestore(distro)
    out: dict[str, list] = {}
    with Reader(path) as r:
        types = {c.topic: c.msgtype for c in r.connections}
        for conn, stamp, data in r.messages():
            out.setdefault(conn.topic, []).append((stamp, store.deserialize_cdr(data, conn.msgtype)))
    return types, out


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("vocab")
    vocab = Vocabulary.from_embeddings(["sky", "road", "car"], torch.randn(3, 64, generator=torch.Generator().manual_seed(1)))
    return vocab.save(d / "voc.safetensors")


MODEL = ["--checkpoint", str(TINY_CKPT), "--crop", "64", "--stride", "32", "--device", "cpu"]


@pytest.mark.parametrize("storage,distro", [("mcap", "humble"), ("sqlite3", "jazzy")])
def test_bag_labels_equal_segment_and_outputs_are_well_formed(tmp_path, vocab_file, storage, distro, capsys):
    src, dst = tmp_path / "in", tmp_path / "out"
    _write_bag(src, storage, distro)
    code = main(["bag", str(src), "-o", str(dst), "--topic", "/camera/image_raw", "--vocab", str(vocab_file),
                 "--keep", "all", "--confidence", "--profile", str(tmp_path / "prof.json"), *MODEL])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "5 frame(s) segmented" in err and "end of bag" in err and "backbone" in err
    assert (tmp_path / "prof.json").is_file() and (tmp_path / "prof.csv").is_file()
    assert any(f.suffix == (".mcap" if storage == "mcap" else ".db3") for f in dst.iterdir())
    types, topics = _read_bag(dst, distro)
    assert types == {"/camera/image_raw": "sensor_msgs/msg/Image", "/chatter": "std_msgs/msg/String",
                     "/radseg/labels": "sensor_msgs/msg/Image", "/radseg/overlay": "sensor_msgs/msg/Image",
                     "/radseg/confidence": "sensor_msgs/msg/Image", "/radseg/label_info": "vision_msgs/msg/LabelInfo"}
    assert [m.data for _, m in topics["/chatter"]] == [f"hello {i}" for i in range(5)]
    (info_stamp, info), = topics["/radseg/label_info"]
    assert cv.class_map(info) == {0: "sky", 1: "road", 2: "car"} and info_stamp == 1000 * 10**9
    # `segment` on the same frames, written as image files
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i, (enc, _) in enumerate(FRAMES):
        cv2.imwrite(str(imgs / f"f{i}.png"), _frame(enc, i)[1])
    assert main(["segment", str(imgs), "-o", str(tmp_path / "seg"), "--vocab", str(vocab_file), "--no-overlay", *MODEL]) == 0
    for i, ((stamp, lab), (_, ovl), (_, conf)) in enumerate(zip(topics["/radseg/labels"], topics["/radseg/overlay"],
                                                                 topics["/radseg/confidence"], strict=True)):
        assert stamp == (1000 + i) * 10**9
        for m in (lab, ovl, conf):
            assert m.header.frame_id == f"cam_{i}" and (m.header.stamp.sec, m.header.stamp.nanosec) == (100 + i, 5000 * i)
            assert (m.height, m.width) == (H, W)
        assert (lab.encoding, ovl.encoding, conf.encoding) == ("mono8", "rgb8", "32FC1")
        seg = np.asarray(PILImage.open(tmp_path / "seg" / f"f{i}_labels.png"))
        np.testing.assert_array_equal(cv.image_to_array(lab), seg, err_msg=f"frame {i} ({FRAMES[i][0]})")
        c = cv.image_to_array_f32(conf)
        assert c.min() >= 1 / 3 - 1e-6 and c.max() <= 1.0


def test_bag_every_prefix_keep_none_and_bad_inputs(tmp_path, vocab_file, capsys):
    src = tmp_path / "in"
    _write_bag(src, "mcap")
    dst = tmp_path / "out"
    code = main(["bag", str(src), "-o", str(dst), "--topic", "/camera/image_raw", "--vocab", str(vocab_file),
                 "--every", "2", "--prefix", "seg/", "--keep", "none", "--no-overlay", "--storage", "sqlite3", *MODEL])
    err = capsys.readouterr().err
    assert code == 0 and "2 image(s) skipped by --every" in err
    types, topics = _read_bag(dst)
    assert set(types) == {"/seg/labels", "/seg/label_info"}
    assert [s for s, _ in topics["/seg/labels"]] == [1000 * 10**9, 1002 * 10**9, 1004 * 10**9]
    for argv, match in (
        ([str(src), "-o", str(dst)], "already exists"),
        ([str(src), "-o", str(tmp_path / "o2"), "--topic", "/chatter"], "carries std_msgs/msg/String"),
        ([str(src), "-o", str(tmp_path / "o2"), "--topic", "/nope"], "image topics there: /camera/image_raw"),
        ([str(tmp_path / "missing"), "-o", str(tmp_path / "o2")], "bag not found"),
        ([str(src), "-o", str(tmp_path / "o2"), "--every", "0"], "--every 0"),
    ):
        argv = ["bag", *argv] + ([] if "--topic" in argv else ["--topic", "/camera/image_raw"])
        assert main([*argv, "--vocab", str(vocab_file), *MODEL]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and match in err[-1], err


def test_truncated_mcap_and_corrupt_sqlite_bags_give_one_line_errors_and_keep_results(tmp_path, vocab_file, capsys):
    src = tmp_path / "in"
    _write_bag(src, "mcap")
    cut = tmp_path / "cut.mcap"
    data = next(src.glob("*.mcap")).read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    assert main(["bag", str(cut), "-o", str(tmp_path / "o1"), "--topic", "/camera/image_raw", "--vocab",
                 str(vocab_file), *MODEL]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "not a readable rosbag2" in err[-1] and "mcap recover" in err[-1]
    assert not (tmp_path / "o1").exists()
    # a sqlite3 bag with one damaged page in the middle of its messages: the frames before it are kept.
    # Which page holds which message depends on SQLite, so the test looks for a page whose damage
    # stops reading after the first frame(s), checking with rosbags itself.
    sq = tmp_path / "sq"
    _write_bag(sq, "sqlite3")
    db = next(sq.glob("*.db3"))
    data = db.read_bytes()

    def frames_readable(raw: bytes) -> int | None:
        db.write_bytes(raw)
        n = 0
        try:
            with Reader(sq) as r:
                for c, _, _ in r.messages():
                    n += c.topic == "/camera/image_raw"
        except Exception:
            return n
        return None  # read to the end

    page = 4096
    for start in range(page, len(data), page):
        damaged = data[:start] + b"\xff" * page + data[start + page:]
        n = frames_readable(damaged)
        if n is not None and 0 < n < len(FRAMES):
            break
    else:
        pytest.fail("no single damaged page stops rosbags in the middle of this sqlite3 bag")
    db.write_bytes(damaged)
    out = tmp_path / "o2"
    code = main(["bag", str(sq), "-o", str(out), "--topic", "/camera/image_raw", "--vocab", str(vocab_file), *MODEL])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith("error: ") and "could not be read to its end" in err[-1], err
    _, topics = _read_bag(out)
    kept = len(topics.get("/radseg/labels", []))
    assert 0 < kept < len(FRAMES) and f"the {kept} frame(s) segmented before it are in {out}" in err[-1]
    shutil.rmtree(out)


def test_node_logic_without_rclpy_segments_compressed_images_and_switches_classes(tmp_path, vocab_file):
    """What the rclpy node does between its callbacks: build the segmenter from parameters, segment a
    CompressedImage, and change classes through the live vocabulary controller (the HTTP endpoint's)."""
    from radseg_edge.errors import VocabularyError
    from radseg_edge.ros2.processor import FrameProcessor, segmenter_from_params
    from radseg_edge.runtime.live_vocab import VocabularyController

    other = Vocabulary.from_embeddings(["tree", "sky"], torch.randn(2, 64, generator=torch.Generator().manual_seed(2)))
    params = parse_params({"checkpoint": str(TINY_CKPT), "vocab": [str(vocab_file), str(other.save(tmp_path / "o.safetensors"))],
                           "crop": 64, "stride": 32, "device": "cpu", "text_model": "none", "publish_confidence": True})
    logs: list[str] = []
    seg, bank = segmenter_from_params(params, log=logs.append)
    controller = VocabularyController(seg, bank, log=logs.append)
    msgs = rosbags_messages()
    proc = FrameProcessor(seg, msgs, params.publish_overlay, params.publish_confidence, params.alpha)
    ok, png = cv2.imencode(".png", RGB[..., ::-1])
    msg = msgs.CompressedImage(header=cv.header(msgs, 7, 8, "cam"), format="png", data=png.reshape(-1))
    out = proc(msg)
    assert out.class_names == ("sky", "road", "car") and out.labels.encoding == "mono8"
    assert {"decode", "backbone", "model_other", "labels", "overlay", "total"} <= set(out.timings)
    assert out.confidence is not None and out.overlay.header.frame_id == "cam"
    np.testing.assert_array_equal(out.label_ids, seg(RGB).labels)
    fut = controller.submit("tree, sky", origin="topic")
    controller.apply_pending()
    assert list(fut.result()) == ["tree", "sky"]
    out2 = proc(msg)
    assert out2.class_names == ("tree", "sky") and int(out2.label_ids.max()) <= 1
    assert cv.class_map(proc.label_info(msg.header)) == {0: "tree", 1: "sky"}
    bad = controller.submit("unicorn", origin="parameter")
    assert isinstance(bad.exception(), VocabularyError)
    controller.apply_pending()
    assert seg.class_names == ("tree", "sky")


def test_colcon_package_is_consistent_with_the_node():
    """The ament_python package: manifest, resource marker, entry point, launch file and parameter file
    agree with radseg_edge.ros2 (static checks: colcon and ROS 2 are not installed here)."""
    import ast
    import importlib
    import re
    import xml.etree.ElementTree as ET
    from pathlib import Path

    from radseg_edge.ros2.params import ALIASES, declared_defaults

    pkg = Path(__file__).resolve().parents[1] / "ros" / "radseg_edge_ros"
    root = ET.parse(pkg / "package.xml").getroot()
    assert root.get("format") == "3" and root.findtext("name") == "radseg_edge_ros"
    assert root.find("export/build_type").text == "ament_python"
    deps = {e.text for e in root.findall("exec_depend")}
    assert {"rclpy", "sensor_msgs", "vision_msgs", "diagnostic_msgs", "std_msgs", "launch_ros"} <= deps
    assert (pkg / "resource" / "radseg_edge_ros").is_file() and (pkg / "setup.cfg").is_file()
    setup = (pkg / "setup.py").read_text()
    assert "radseg_node = {PACKAGE}.radseg_node:main" in setup and 'PACKAGE = "radseg_edge_ros"' in setup
    assert "def main" in (pkg / "radseg_edge_ros" / "radseg_node.py").read_text()
    ast.parse((pkg / "launch" / "radseg.launch.py").read_text())
    assert callable(importlib.import_module("radseg_edge.ros2.node").main)
    keys = re.findall(r"^    (\w+):", (pkg / "config" / "radseg.yaml").read_text(), flags=re.M)
    assert set(keys) == set(declared_defaults())  # every parameter documented in the file, none unknown
    launch_keys = set(re.findall(r'^    "(\w+)": \(', (pkg / "launch" / "radseg.launch.py").read_text(), flags=re.M))
    assert launch_keys - {"image", "camera_info_topic", "namespace", "params_file"} <= set(declared_defaults()) | set(ALIASES)


def test_bag_with_an_exported_onnxruntime_backend_equals_segment(tmp_path, capsys):
    """Any backend: the ONNX Runtime backend over the shared tiny export gives `segment`'s labels in the bag."""
    pytest.importorskip("onnxruntime")
    from tests._export_helpers import CROP, FRAME_HW, STRIDE, tiny_export_folder

    folder = tiny_export_folder()
    msgs, store = rosbags_messages(), typestore()
    frames = [np.random.default_rng(20 + i).integers(0, 256, (*FRAME_HW, 3), dtype=np.uint8) for i in range(2)]
    src = tmp_path / "in.mcap"
    w = Writer(tmp_path / "inbag", version=8, storage_plugin=StoragePlugin.MCAP)
    w.open()
    cam = w.add_connection("/cam", "sensor_msgs/msg/Image", typestore=store)
    for i, f in enumerate(frames):
        w.write(cam, 10 + i, serialize(cv.array_to_image(msgs, f, "rgb8", cv.header(msgs, i, 0, "c")), "humble"))
        cv2.imwrite(str(tmp_path / f"f{i}.png"), f[..., ::-1])
    w.close()
    src = next((tmp_path / "inbag").glob("*.mcap"))  # the .mcap file alone is a valid input too
    opts = ["--checkpoint", str(TINY_CKPT), "--vocab", str(folder.parent / "vocab.safetensors"), "--crop", str(CROP),
            "--stride", str(STRIDE), "--backend", "onnxruntime", "--export-dir", str(folder)]
    assert main(["bag", str(src), "-o", str(tmp_path / "out"), "--topic", "/cam", "--no-overlay", *opts]) == 0
    assert "model" in capsys.readouterr().err  # exported graphs report one model stage
    assert main(["segment", str(tmp_path / "f0.png"), str(tmp_path / "f1.png"), "-o", str(tmp_path / "seg"),
                 "--no-overlay", *opts]) == 0
    _, topics = _read_bag(tmp_path / "out")
    for i, (_, lab) in enumerate(topics["/radseg/labels"]):
        seg = np.asarray(PILImage.open(tmp_path / "seg" / f"f{i}_labels.png"))
        np.testing.assert_array_equal(cv.image_to_array(lab), seg)


def test_bag_compressed_topic_gives_the_raw_topics_labels_and_bad_frames_stop_with_one_line(tmp_path, vocab_file, capsys):
    store, msgs = typestore(), rosbags_messages()
    w = Writer(tmp_path / "in", version=8, storage_plugin=StoragePlugin.MCAP)
    w.open()
    raw = w.add_connection("/cam", "sensor_msgs/msg/Image", typestore=store)
    comp = w.add_connection("/cam/compressed", "sensor_msgs/msg/CompressedImage", typestore=store)
    odd = w.add_connection("/odd", "sensor_msgs/msg/Image", typestore=store)
    for i in range(2):
        rgb = _frame("rgb8", i)[0]
        hdr = cv.header(msgs, i, 0, "cam")
        w.write(raw, 10 + i, serialize(cv.array_to_image(msgs, rgb, "rgb8", hdr)))
        png = cv2.imencode(".png", rgb[..., ::-1])[1].reshape(-1)
        w.write(comp, 10 + i, serialize(msgs.CompressedImage(header=hdr, format="png", data=png)))
        w.write(odd, 10 + i, serialize(msgs.Image(header=hdr, height=2, width=2, encoding="yuv422", is_bigendian=0,
                                                  step=4, data=np.zeros(8, np.uint8))))
    w.close()
    labels = {}
    for topic in ("/cam", "/cam/compressed"):
        out = tmp_path / topic.replace("/", "_")
        assert main(["bag", str(tmp_path / "in"), "-o", str(out), "--topic", topic, "--vocab", str(vocab_file),
                     "--no-overlay", *MODEL]) == 0
        labels[topic] = [cv.image_to_array(m) for _, m in _read_bag(out)[1]["/radseg/labels"]]
    assert len(labels["/cam"]) == 2
    for a, b in zip(labels["/cam"], labels["/cam/compressed"], strict=True):
        np.testing.assert_array_equal(a, b)
    capsys.readouterr()
    assert main(["bag", str(tmp_path / "in"), "-o", str(tmp_path / "odd"), "--topic", "/odd", "--vocab", str(vocab_file),
                 *MODEL]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: /odd, image message 1: image encoding 'yuv422' is not supported") and "0 frame(s)" in err


class _FakeNode:
    """The handful of rclpy.node.Node methods RadsegNode calls, recording what it publishes."""

    def __init__(self) -> None:
        import threading
        from types import SimpleNamespace

        self.published: dict[str, list] = {}
        self.subscriptions: dict[str, tuple] = {}
        self.timers: list = []
        self.param_callbacks: list = []
        self.logs: list[str] = []
        self.cond = threading.Condition()
        log = lambda *a, **k: self.logs.append(str(a[0]))  # noqa: E731
        self._logger = SimpleNamespace(info=log, warning=log, error=log)

    def create_publisher(self, msg_type, topic, qos):
        node = self

        class Pub:
            def publish(self, msg):
                with node.cond:
                    node.published.setdefault(topic, []).append(msg)
                    node.cond.notify_all()

        self.published.setdefault(topic, [])
        return Pub()

    def create_subscription(self, msg_type, topic, callback, qos):
        self.subscriptions[topic] = (msg_type, callback, qos)

    def add_on_set_parameters_callback(self, cb):
        self.param_callbacks.append(cb)

    def create_timer(self, period, cb):
        self.timers.append((period, cb))

    def get_logger(self):
        return self._logger

    def get_name(self):
        return "radseg_edge"

    def get_clock(self):
        from types import SimpleNamespace

        msgs = rosbags_messages()
        return SimpleNamespace(now=lambda: SimpleNamespace(to_msg=lambda: msgs.Time(sec=1, nanosec=2)))

    def wait(self, topic: str, n: int, timeout: float = 60.0) -> list:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.published.get(topic, [])) >= n, timeout), (topic, self.published)
            return list(self.published[topic])


def test_node_wiring_with_a_fake_rclpy_node(tmp_path, vocab_file, monkeypatch):
    """RadsegNode's glue, driven through a fake node with rosbags messages: subscriptions and QoS, outputs
    with the input header, LabelInfo before the first result and again after a class change (topic and
    parameter), refused parameter changes, diagnostics. The real rclpy calls have not run (no ROS 2 here)."""
    import sys
    from types import ModuleType, SimpleNamespace

    from radseg_edge.ros2.node import RadsegNode

    rcl = ModuleType("rcl_interfaces.msg")
    rcl.SetParametersResult = lambda successful, reason="": SimpleNamespace(successful=successful, reason=reason)
    monkeypatch.setitem(sys.modules, "rcl_interfaces", ModuleType("rcl_interfaces"))
    monkeypatch.setitem(sys.modules, "rcl_interfaces.msg", rcl)
    other = Vocabulary.from_embeddings(["tree", "sky"], torch.randn(2, 64, generator=torch.Generator().manual_seed(2)))
    params = parse_params({"checkpoint": str(TINY_CKPT), "vocab": [str(vocab_file), str(other.save(tmp_path / "o.safetensors"))],
                           "crop": 64, "stride": 32, "device": "cpu", "text_model": "none", "camera_info": True})
    fake, msgs = _FakeNode(), rosbags_messages()
    node = RadsegNode(fake, params, msgs=msgs, qos=lambda spec: spec)
    try:
        assert set(fake.subscriptions) == {"image", "camera_info", "~/classes"}
        assert fake.subscriptions["image"][2].reliability == "best_effort"  # SENSOR_DATA in, depth 1
        assert set(fake.published) == {"~/labels", "~/overlay", "~/camera_info", "~/label_info", "/diagnostics"}
        image_cb, info_cb = fake.subscriptions["image"][1], fake.subscriptions["camera_info"][1]
        info_cb(SimpleNamespace(header=None, width=W, height=H))  # republished with each result's header
        image_cb(cv.array_to_image(msgs, RGB, "rgb8", cv.header(msgs, 42, 7, "cam_optical")))
        labels = fake.wait("~/labels", 1)
        assert labels[0].header.frame_id == "cam_optical" and labels[0].header.stamp.sec == 42
        assert fake.wait("~/overlay", 1)[0].encoding == "rgb8"
        assert fake.wait("~/camera_info", 1)[0].header.stamp.nanosec == 7
        infos = fake.wait("~/label_info", 1)
        assert cv.class_map(infos[0]) == {0: "sky", 1: "road", 2: "car"}
        # classes by topic, then by parameter; a refused name and a read-only parameter are reported back
        fake.subscriptions["~/classes"][1](msgs.String(data="tree, sky"))
        image_cb(cv.array_to_image(msgs, RGB, "bgr8", cv.header(msgs, 43, 0, "cam_optical")))
        assert cv.class_map(fake.wait("~/label_info", 2)[1]) == {0: "tree", 1: "sky"}
        assert int(cv.image_to_labels(fake.wait("~/labels", 2)[1]).max()) <= 1
        cb = fake.param_callbacks[0]
        assert cb([SimpleNamespace(name="classes", value="sky, road")]).successful
        refused = cb([SimpleNamespace(name="classes", value="unicorn")])
        assert not refused.successful and "unicorn" in refused.reason
        assert not cb([SimpleNamespace(name="crop", value=128)]).successful
        image_cb(cv.array_to_image(msgs, RGB, "rgb8", cv.header(msgs, 44, 0, "cam_optical")))
        assert cv.class_map(fake.wait("~/label_info", 3)[2]) == {0: "sky", 1: "road"}
        fake.wait("~/labels", 3)
        # diagnostics (the 1 Hz timer's callback)
        period, diag_cb = fake.timers[0]
        assert period == 1.0
        diag_cb()
        (arr,) = fake.published["/diagnostics"]
        values = {kv.key: kv.value for kv in arr.status[0].values}
        assert values["frames"] == "3" and "backbone_p50_ms" in values and "publish_p50_ms" in values
        assert deserialize(serialize(arr), "diagnostic_msgs/msg/DiagnosticArray").status[0].level == 0
    finally:
        node.shutdown()
