"""Readers of posed RGB-D sequences: Replica (NICE-SLAM layout), ScanNet (SensReader export), TUM RGB-D.

Every reader yields :class:`Frame` objects with the conventions of radseg_edge.mapping: RGB uint8, depth in
metres (0 = invalid), 3 x 3 intrinsics of the depth image, 4 x 4 camera-to-world pose with OpenCV camera
axes (x right, y down, z forward). Frames with an invalid pose (non-finite, as ScanNet marks lost tracking)
are skipped.

    seq = open_sequence("Replica/room0", "replica", every=10)
    for frame in seq: ...
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radseg_edge.errors import InputError
from radseg_edge.mapping.geometry import quaternion_to_matrix

LAYOUTS = ("replica", "scannet", "tum")

#: TUM RGB-D intrinsics per camera (fx, fy, cx, cy), from the dataset's documentation; "default" is the
#: ROS default the dataset recommends for its pre-registered depth when no calibration is known.
TUM_INTRINSICS = {
    "freiburg1": (517.3, 516.5, 318.6, 255.3),
    "freiburg2": (520.9, 521.0, 325.1, 249.7),
    "freiburg3": (535.4, 539.2, 320.1, 247.6),
    "default": (525.0, 525.0, 319.5, 239.5),
}


@dataclass
class Frame:
    """One posed RGB-D frame.

    Attributes:
        rgb: H' x W' x 3 uint8 RGB (may differ in size from the depth; then it covers the same field of view).
        depth: H x W float32 metres, 0 where invalid.
        intrinsics: 3 x 3 float64 of the depth image.
        pose: 4 x 4 float64 camera-to-world (OpenCV axes).
        name: the frame's name or timestamp.
        labels: H x W int64 ground-truth labels when known (synthetic data), else None.
    """

    rgb: np.ndarray
    depth: np.ndarray
    intrinsics: np.ndarray
    pose: np.ndarray
    name: str = ""
    labels: np.ndarray | None = None


def _read_image(path: Path, flags: int) -> np.ndarray:
    import cv2

    if not path.is_file():
        raise InputError(f"missing file in the sequence: {path}")
    img = cv2.imread(str(path), flags)
    if img is None:
        raise InputError(f"{path}: not a readable image")
    return img


def _read_rgb(path: Path) -> np.ndarray:
    import cv2

    img = _read_image(path, cv2.IMREAD_COLOR)
    return np.ascontiguousarray(img[..., ::-1])


def _read_depth(path: Path, scale: float) -> np.ndarray:
    import cv2

    d = _read_image(path, cv2.IMREAD_UNCHANGED)
    if d.ndim != 2:
        raise InputError(f"{path}: a depth image must have one channel (16-bit PNG), got shape {d.shape}")
    return d.astype(np.float32) / float(scale)


def _intrinsics(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)


class Sequence:
    """Base class: ``len(seq)`` frames, ``seq[i]`` loads frame i, iteration loads them in order."""

    layout = ""

    def __init__(self, root: str | Path, every: int = 1, max_frames: int | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"sequence folder not found: {self.root}")
        if every < 1:
            raise InputError(f"--every must be >= 1, got {every}")
        self.every = int(every)
        self.max_frames = max_frames
        self._items: list = []

    def _select(self, items: list) -> list:
        items = items[:: self.every]
        return items[: self.max_frames] if self.max_frames is not None else items

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> Frame:
        return self._load(self._items[index])

    def __iter__(self) -> Iterator[Frame]:
        for item in self._items:
            yield self._load(item)

    def _load(self, item) -> Frame:  # pragma: no cover - abstract
        raise NotImplementedError


class ReplicaSequence(Sequence):
    """NICE-SLAM's Replica: cam_params.json (here or in the parent folder), traj.txt (one 4 x 4 c2w per line,
    row-major) and results/frame%06d.jpg + results/depth%06d.png (16-bit, metres x ``scale``, 6553.5)."""

    layout = "replica"

    def __init__(self, root, every: int = 1, max_frames: int | None = None) -> None:
        super().__init__(root, every, max_frames)
        cam_file = next((p for p in (self.root / "cam_params.json", self.root.parent / "cam_params.json") if p.is_file()), None)
        if cam_file is None:
            raise InputError(f"{self.root}: no cam_params.json here or in the parent folder (NICE-SLAM Replica layout)")
        try:
            cam = json.loads(cam_file.read_text())["camera"]
            self.intrinsics = _intrinsics(cam["fx"], cam["fy"], cam["cx"], cam["cy"])
            self.scale = float(cam.get("scale", 6553.5))
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{cam_file}: expected {{'camera': {{fx, fy, cx, cy, scale}}}} ({exc})") from None
        traj = self.root / "traj.txt"
        if not traj.is_file():
            raise InputError(f"{self.root}: no traj.txt (NICE-SLAM Replica layout)")
        poses = np.loadtxt(traj, ndmin=2)
        if poses.shape[1] != 16:
            raise InputError(f"{traj}: expected 16 numbers (a row-major 4x4 pose) per line, got {poses.shape[1]}")
        items = [(i, p.reshape(4, 4)) for i, p in enumerate(poses) if np.isfinite(p).all()]
        self._items = self._select(items)

    def _load(self, item) -> Frame:
        i, pose = item
        res = self.root / "results"
        return Frame(_read_rgb(res / f"frame{i:06d}.jpg"), _read_depth(res / f"depth{i:06d}.png", self.scale),
                     self.intrinsics, pose, f"{i:06d}")


class ScanNetSequence(Sequence):
    """ScanNet exported by SensReader: color/N.jpg, depth/N.png (16-bit millimetres), pose/N.txt (4 x 4 c2w;
    -inf when tracking was lost: skipped), intrinsic/intrinsic_depth.txt (4 x 4). The colour image is resized
    to the depth resolution (both streams cover the same field of view after SensReader's registration)."""

    layout = "scannet"

    def __init__(self, root, every: int = 1, max_frames: int | None = None, depth_scale: float = 1000.0) -> None:
        super().__init__(root, every, max_frames)
        for sub in ("color", "depth", "pose", "intrinsic"):
            if not (self.root / sub).is_dir():
                raise InputError(f"{self.root}: no {sub}/ folder (ScanNet SensReader export: color/ depth/ pose/ intrinsic/)")
        kfile = self.root / "intrinsic" / "intrinsic_depth.txt"
        if not kfile.is_file():
            raise InputError(f"{kfile} not found")
        self.intrinsics = np.loadtxt(kfile)[:3, :3].astype(np.float64)
        self.depth_scale = depth_scale
        ids = sorted(int(p.stem) for p in (self.root / "depth").glob("*.png") if p.stem.isdigit())
        self._items = self._select([i for i in ids if self._pose(i) is not None])

    def _pose(self, i: int) -> np.ndarray | None:
        path = self.root / "pose" / f"{i}.txt"
        if not path.is_file():
            return None
        pose = np.loadtxt(path)
        return pose if pose.shape == (4, 4) and np.isfinite(pose).all() else None

    def _load(self, i) -> Frame:
        import cv2

        depth = _read_depth(self.root / "depth" / f"{i}.png", self.depth_scale)
        color = self.root / "color" / f"{i}.jpg"
        rgb = _read_rgb(color if color.is_file() else color.with_suffix(".png"))
        if rgb.shape[:2] != depth.shape:
            rgb = cv2.resize(rgb, (depth.shape[1], depth.shape[0]), interpolation=cv2.INTER_AREA)
        return Frame(rgb, depth, self.intrinsics, self._pose(i), str(i))


def _read_list(path: Path) -> list[tuple[float, list[str]]]:
    if not path.is_file():
        raise InputError(f"{path} not found (TUM RGB-D layout: rgb.txt, depth.txt, groundtruth.txt)")
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts and not parts[0].startswith("#"):
            try:
                out.append((float(parts[0]), parts[1:]))
            except ValueError:
                raise InputError(f"{path}: bad line {line!r} (expected 'timestamp ...')") from None
    return out


def _nearest(stamps: np.ndarray, t: float) -> int:
    i = int(np.searchsorted(stamps, t))
    cands = [j for j in (i - 1, i) if 0 <= j < len(stamps)]
    return min(cands, key=lambda j: abs(stamps[j] - t))


class TumSequence(Sequence):
    """TUM RGB-D: rgb.txt, depth.txt, groundtruth.txt (timestamp tx ty tz qx qy qz qw), depth PNGs x 5000.

    Association, per depth frame: the rgb frame and the ground-truth pose nearest in time, each within
    ``max_dt`` seconds (0.02, TUM's associate.py default); depth frames without both are skipped.
    Intrinsics: ``intrinsics`` (fx, fy, cx, cy) if given, else an ``intrinsics.txt`` ("fx fy cx cy") in the
    folder, else by camera from the folder name (freiburg1/2/3), else TUM's ROS default (525, 525, 319.5, 239.5).
    """

    layout = "tum"

    def __init__(self, root, every: int = 1, max_frames: int | None = None, max_dt: float = 0.02,
                 intrinsics: tuple[float, float, float, float] | None = None) -> None:
        super().__init__(root, every, max_frames)
        rgb = _read_list(self.root / "rgb.txt")
        depth = _read_list(self.root / "depth.txt")
        gt = _read_list(self.root / "groundtruth.txt")
        if not rgb or not depth or not gt:
            raise InputError(f"{self.root}: rgb.txt, depth.txt and groundtruth.txt must each list at least one entry")
        self.intrinsics = _intrinsics(*self._camera(intrinsics))
        rgb_t = np.array([t for t, _ in rgb])
        gt.sort(key=lambda e: e[0])
        gt_t = np.array([t for t, _ in gt])
        items = []
        for t, rest in depth:
            i, j = _nearest(rgb_t, t), _nearest(gt_t, t)
            if abs(rgb_t[i] - t) > max_dt or abs(gt_t[j] - t) > max_dt:
                continue
            vals = [float(x) for x in gt[j][1][:7]]
            if len(vals) != 7:
                raise InputError(f"{self.root / 'groundtruth.txt'}: expected 'timestamp tx ty tz qx qy qz qw'")
            pose = np.eye(4)
            pose[:3, :3] = quaternion_to_matrix(*vals[3:7])
            pose[:3, 3] = vals[:3]
            items.append((t, rest[0], rgb[i][1][0], pose))
        if not items:
            raise InputError(f"{self.root}: no depth frame has an rgb frame and a pose within {max_dt} s")
        self._items = self._select(items)

    def _camera(self, given) -> tuple[float, float, float, float]:
        if given is not None:
            return tuple(float(x) for x in given)
        f = self.root / "intrinsics.txt"
        if f.is_file():
            vals = f.read_text().split()
            if len(vals) != 4:
                raise InputError(f"{f}: expected 'fx fy cx cy'")
            return tuple(float(x) for x in vals)
        m = re.search(r"freiburg[123]", self.root.name)
        return TUM_INTRINSICS[m.group(0) if m else "default"]

    def _load(self, item) -> Frame:
        t, depth_file, rgb_file, pose = item
        return Frame(_read_rgb(self.root / rgb_file), _read_depth(self.root / depth_file, 5000.0),
                     self.intrinsics, pose, f"{t:.6f}")


def open_sequence(root: str | Path, layout: str, every: int = 1, max_frames: int | None = None) -> Sequence:
    """The reader of ``layout`` ("replica", "scannet" or "tum") for the sequence folder ``root``."""
    readers = {"replica": ReplicaSequence, "scannet": ScanNetSequence, "tum": TumSequence}
    if layout not in readers:
        raise InputError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    return readers[layout](root, every=every, max_frames=max_frames)
