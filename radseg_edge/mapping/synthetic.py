"""A synthetic RGB-D scene with known geometry and labels, for mapping tests and benchmarks.

A room (floor at z = 0, four walls, open top) with axis-aligned boxes, rendered by ray casting in numpy:
depth (metres, 0 where a ray leaves the room), per-pixel class labels (-1 there) and a shaded RGB image.
Camera poses follow a circle around the room centre (OpenCV camera axes, camera-to-world).

    scene = SyntheticScene()
    frames = scene.sequence(5, size=(120, 160), noise=0.01, seed=0)   # list of Frame
    write_sequence(folder, frames, "replica")                         # a Replica / ScanNet / TUM folder
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from radseg_edge.mapping.geometry import look_at, matrix_to_quaternion
from radseg_edge.mapping.readers import Frame

CLASSES = ("floor", "wall", "box", "cabinet")
#: base RGB colour per class
_COLORS = np.array([[150, 120, 90], [200, 200, 190], [40, 90, 200], [180, 60, 50]], dtype=np.float64)


@dataclass
class SyntheticScene:
    """Room of ``size`` metres (x, y, wall height) with boxes (min corner, max corner, class index)."""

    size: tuple[float, float, float] = (6.0, 5.0, 2.6)
    boxes: list[tuple[tuple[float, float, float], tuple[float, float, float], int]] = field(default_factory=lambda: [
        ((1.0, 1.0, 0.0), (1.8, 1.6, 0.7), 2),
        ((3.5, 2.8, 0.0), (4.4, 3.6, 1.2), 3),
        ((2.2, 3.6, 0.0), (2.8, 4.2, 0.5), 2),
        ((4.6, 0.8, 0.0), (5.6, 1.4, 0.9), 3),
    ])
    classes: tuple[str, ...] = CLASSES

    @staticmethod
    def intrinsics(size: tuple[int, int], fov_deg: float = 70.0) -> np.ndarray:
        """3 x 3 pinhole intrinsics of an H x W image with horizontal field of view ``fov_deg``."""
        h, w = size
        f = 0.5 * w / np.tan(np.radians(fov_deg) / 2)
        return np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]], dtype=np.float64)

    def poses(self, n: int, radius: float = 1.6, height: float = 1.5) -> list[np.ndarray]:
        """``n`` camera-to-world poses on a circle around the room centre, looking across the room."""
        cx, cy = self.size[0] / 2, self.size[1] / 2
        out = []
        for i in range(n):
            a = 2 * np.pi * i / max(n, 1)
            eye = (cx + radius * np.cos(a), cy + radius * np.sin(a), height)
            target = (cx - 2.0 * np.cos(a + 0.6), cy - 2.0 * np.sin(a + 0.6), 0.4)
            out.append(look_at(eye, target))
        return out

    def cast(self, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ray casting: N x 3 origins and directions -> (N ray parameters t of the first hit (inf: none), N labels)."""
        big = np.inf
        t_best = np.full(origins.shape[0], big)
        label = np.full(origins.shape[0], -1, dtype=np.int64)
        with np.errstate(divide="ignore", invalid="ignore"):
            # floor
            t = np.where(dirs[:, 2] < 0, -origins[:, 2] / dirs[:, 2], big)
            hit = t < t_best
            t_best[hit], label[hit] = t[hit], 0
            # walls (the room's inside faces; a hit above the wall height escapes)
            tw = np.full(origins.shape[0], big)
            for axis in (0, 1):
                d, o, s = dirs[:, axis], origins[:, axis], self.size[axis]
                ta = np.where(d > 0, (s - o) / d, np.where(d < 0, -o / d, big))
                tw = np.minimum(tw, ta)
            z = origins[:, 2] + tw * dirs[:, 2]
            tw = np.where((z >= 0) & (z <= self.size[2]), tw, big)
            hit = tw < t_best
            t_best[hit], label[hit] = tw[hit], 1
            # boxes (slab method)
            for lo, hi, cls in self.boxes:
                lo, hi = np.asarray(lo), np.asarray(hi)
                t1 = (lo - origins) / dirs
                t2 = (hi - origins) / dirs
                tmin = np.nanmax(np.minimum(t1, t2), axis=1)
                tmax = np.nanmin(np.maximum(t1, t2), axis=1)
                ok = (tmax >= tmin) & (tmin > 0)
                hit = ok & (tmin < t_best)
                t_best[hit], label[hit] = tmin[hit], cls
        return t_best, label

    def render(self, pose: np.ndarray, intrinsics: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(H x W x 3 uint8 RGB, H x W float32 depth in metres (0: no surface), H x W int64 labels (-1: none))."""
        h, w = size
        v, u = np.mgrid[0:h, 0:w]
        k = intrinsics
        cam = np.stack(((u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones_like(u, dtype=np.float64)), -1)
        dirs = cam.reshape(-1, 3) @ pose[:3, :3].T
        origins = np.broadcast_to(pose[:3, 3], dirs.shape)
        t, label = self.cast(origins, dirs)
        depth = np.where(np.isfinite(t), t, 0.0).reshape(h, w).astype(np.float32)  # z-depth: cam z is 1
        label = label.reshape(h, w)
        points = origins + dirs * np.where(np.isfinite(t), t, 0.0)[:, None]
        checker = ((np.floor(points[:, 0] * 4) + np.floor(points[:, 1] * 4) + np.floor(points[:, 2] * 4)) % 2).reshape(h, w)
        base = _COLORS[np.clip(label, 0, len(_COLORS) - 1)] * (0.8 + 0.2 * checker[..., None])
        rgb = np.where(label[..., None] >= 0, base, 0.0).clip(0, 255).astype(np.uint8)
        return rgb, depth, label

    def sequence(self, n: int, size: tuple[int, int] = (120, 160), noise: float = 0.0, seed: int = 0,
                 fov_deg: float = 70.0) -> list[Frame]:
        """``n`` frames on the circle; ``noise`` > 0 adds Gaussian depth noise of ``noise`` metres at 1 m, growing as z^2.

        Each frame's ``labels`` holds the ground truth of the noise-free rendering.
        """
        rng = np.random.default_rng(seed)
        k = self.intrinsics(size, fov_deg)
        frames = []
        for i, pose in enumerate(self.poses(n)):
            rgb, depth, label = self.render(pose, k, size)
            if noise > 0:
                depth = add_depth_noise(depth, noise, rng)
            frames.append(Frame(rgb=rgb, depth=depth, intrinsics=k, pose=pose, name=f"{i:06d}", labels=label))
        return frames


def add_depth_noise(depth: np.ndarray, sigma_1m: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian depth noise with standard deviation ``sigma_1m`` * z^2 (metres); invalid (0) pixels stay 0."""
    noisy = depth + rng.normal(size=depth.shape) * sigma_1m * depth.astype(np.float64) ** 2
    return np.where(depth > 0, noisy, 0.0).astype(np.float32)


def surface_points(frames: list[Frame]) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth surface points of noise-free frames: (N x 3 world points, N labels), labelled pixels only."""
    xyz, labels = [], []
    for f in frames:
        h, w = f.depth.shape
        v, u = np.nonzero((f.depth > 0) & (f.labels >= 0))
        z = f.depth[v, u].astype(np.float64)
        k = f.intrinsics
        cam = np.stack(((u - k[0, 2]) * z / k[0, 0], (v - k[1, 2]) * z / k[1, 1], z), 1)
        xyz.append(cam @ f.pose[:3, :3].T + f.pose[:3, 3])
        labels.append(f.labels[v, u])
    return np.concatenate(xyz), np.concatenate(labels)


# -- writers of the dataset layouts (for reader tests, the CLI test and the benchmark) --------------------
def write_sequence(folder: str | Path, frames: list[Frame], layout: str) -> Path:
    """Write ``frames`` as a sequence folder of ``layout`` ("replica", "scannet" or "tum")."""
    import cv2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    k = frames[0].intrinsics
    h, w = frames[0].depth.shape

    def bgr(rgb):
        return np.ascontiguousarray(rgb[..., ::-1])

    if layout == "replica":  # NICE-SLAM: cam_params.json, traj.txt, results/frame%06d.jpg + depth%06d.png
        scale = 6553.5
        cam = {"camera": {"w": w, "h": h, "fx": k[0, 0], "fy": k[1, 1], "cx": k[0, 2], "cy": k[1, 2], "scale": scale}}
        (folder / "cam_params.json").write_text(json.dumps(cam))
        (folder / "results").mkdir(exist_ok=True)
        lines = []
        for i, f in enumerate(frames):
            cv2.imwrite(str(folder / "results" / f"frame{i:06d}.jpg"), bgr(f.rgb))
            cv2.imwrite(str(folder / "results" / f"depth{i:06d}.png"), np.round(f.depth * scale).astype(np.uint16))
            lines.append(" ".join(f"{x:.10g}" for x in f.pose.reshape(-1)))
        (folder / "traj.txt").write_text("\n".join(lines) + "\n")
    elif layout == "scannet":  # SensReader export: color/ depth/ pose/ intrinsic/
        for sub in ("color", "depth", "pose", "intrinsic"):
            (folder / sub).mkdir(exist_ok=True)
        k4 = np.eye(4)
        k4[:3, :3] = k
        # the colour stream is twice the depth resolution, as ScanNet's 1296x968 vs 640x480
        kc = k4.copy()
        kc[:2] *= 2
        np.savetxt(folder / "intrinsic" / "intrinsic_depth.txt", k4, fmt="%.6f")
        np.savetxt(folder / "intrinsic" / "intrinsic_color.txt", kc, fmt="%.6f")
        for i, f in enumerate(frames):
            cv2.imwrite(str(folder / "color" / f"{i}.jpg"), cv2.resize(bgr(f.rgb), (2 * w, 2 * h), interpolation=cv2.INTER_NEAREST))
            cv2.imwrite(str(folder / "depth" / f"{i}.png"), np.round(f.depth * 1000).astype(np.uint16))
            np.savetxt(folder / "pose" / f"{i}.txt", f.pose, fmt="%.8f")
    elif layout == "tum":  # rgb.txt, depth.txt, groundtruth.txt (timestamps differ; poses at a higher rate)
        (folder / "rgb").mkdir(exist_ok=True)
        (folder / "depth").mkdir(exist_ok=True)
        rgb_lines, depth_lines, gt_lines = ["# color images"], ["# depth maps"], ["# timestamp tx ty tz qx qy qz qw"]
        for i, f in enumerate(frames):
            t = 1000.0 + i * 0.5
            cv2.imwrite(str(folder / "rgb" / f"{t + 0.004:.6f}.png"), bgr(f.rgb))
            cv2.imwrite(str(folder / "depth" / f"{t:.6f}.png"), np.round(f.depth * 5000).astype(np.uint16))
            rgb_lines.append(f"{t + 0.004:.6f} rgb/{t + 0.004:.6f}.png")
            depth_lines.append(f"{t:.6f} depth/{t:.6f}.png")
            q = matrix_to_quaternion(f.pose[:3, :3])
            tx, ty, tz = f.pose[:3, 3]
            # an unrelated pose 0.1 s earlier, and this frame's pose 3 ms later: the nearest one must win
            gt_lines.append(f"{t - 0.1:.4f} 0 0 0 0 0 0 1")
            gt_lines.append(f"{t + 0.003:.4f} {tx:.8f} {ty:.8f} {tz:.8f} {q[0]:.10f} {q[1]:.10f} {q[2]:.10f} {q[3]:.10f}")
        (folder / "rgb.txt").write_text("\n".join(rgb_lines) + "\n")
        (folder / "depth.txt").write_text("\n".join(depth_lines) + "\n")
        (folder / "groundtruth.txt").write_text("\n".join(gt_lines) + "\n")
        (folder / "intrinsics.txt").write_text(" ".join(f"{x:.8f}" for x in (k[0, 0], k[1, 1], k[0, 2], k[1, 2])) + "\n")
    else:
        raise ValueError(f"unknown layout {layout!r}")
    return folder
