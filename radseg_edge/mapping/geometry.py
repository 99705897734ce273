"""Camera geometry for mapping: back-projection, look-at poses, rotations <-> quaternions.

Conventions (every module of radseg_edge.mapping): depth in metres (NaN, 0 and inf are invalid); intrinsics
3 x 3 of the DEPTH image, pixel centres at integer coordinates (OpenCV); poses 4 x 4 camera-to-world with
OpenCV camera axes (x right, y down, z forward); world units metres.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from radseg_edge.errors import InputError


def as_matrix(value, shape: tuple[int, int], name: str) -> np.ndarray:
    """A float64 numpy matrix of ``shape`` from a list, array or tensor; a clear error otherwise."""
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value, dtype=np.float64)
    if array.shape != shape:
        raise InputError(f"{name} must be a {shape[0]}x{shape[1]} matrix, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise InputError(f"{name} contains NaN or inf values")
    return array


def valid_depth(depth: Tensor, depth_min: float, depth_max: float) -> Tensor:
    """H x W bool: finite depth inside [depth_min, depth_max] metres (0, NaN, inf and negatives are invalid)."""
    return torch.isfinite(depth) & (depth > max(depth_min, 0.0)) & (depth <= depth_max)


def backproject(depth: Tensor, intrinsics: np.ndarray, pose: np.ndarray, mask: Tensor) -> tuple[Tensor, Tensor]:
    """World points of the pixels in ``mask``.

    Args:
        depth: H x W float depth in metres (z along the optical axis).
        intrinsics: 3 x 3 (fx, fy, cx, cy of the depth image); pose: 4 x 4 camera-to-world (OpenCV axes).
        mask: H x W bool, the pixels to back-project.
    Returns:
        (N x 3 float32 world points, N int64 flat pixel indices v * W + u), on ``depth``'s device.
    """
    h, w = depth.shape
    flat = torch.nonzero(mask.reshape(-1)).squeeze(1)
    v = torch.div(flat, w, rounding_mode="floor")
    u = flat - v * w
    z = depth.reshape(-1)[flat].double()
    fx, fy, cx, cy = intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2]
    cam = torch.stack(((u.double() - cx) * z / fx, (v.double() - cy) * z / fy, z), dim=1)
    rot = torch.as_tensor(pose[:3, :3], dtype=torch.float64, device=depth.device)
    trans = torch.as_tensor(pose[:3, 3], dtype=torch.float64, device=depth.device)
    return (cam @ rot.T + trans).float(), flat


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """4 x 4 camera-to-world pose (OpenCV axes) of a camera at ``eye`` looking at ``target`` (world z up)."""
    eye, target, up = (np.asarray(a, dtype=np.float64) for a in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        raise InputError("look_at: the viewing direction is parallel to the up vector")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x, y, z, eye
    return pose


def quaternion_to_matrix(qx: float, qy: float, qz: float, qw: float) -> np.ndarray:
    """3 x 3 rotation of a unit quaternion (Hamilton, TUM's qx qy qz qw order); normalised first."""
    q = np.array([qw, qx, qy, qz], dtype=np.float64)
    n = np.linalg.norm(q)
    if n < 1e-12:
        raise InputError("zero quaternion in a pose")
    w, x, y, z = q / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quaternion(rot: np.ndarray) -> tuple[float, float, float, float]:
    """(qx, qy, qz, qw) of a 3 x 3 rotation matrix (Shepperd's method, qw >= 0)."""
    m = np.asarray(rot, dtype=np.float64)
    tr = np.trace(m)
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = (0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s)
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = ((m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s)
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = ((m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s)
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = ((m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s)
    w, x, y, z = q
    if w < 0:
        w, x, y, z = -w, -x, -y, -z
    return float(x), float(y), float(z), float(w)


def bilinear_taps(out_size: tuple[int, int], in_size: tuple[int, int], flat: Tensor) -> tuple[Tensor, Tensor]:
    """The 4 source cells and weights of bilinear upsampling (align_corners=False, as F.interpolate).

    For the output pixels ``flat`` (N flat indices into an H x W grid), the value that
    ``F.interpolate(x, (H, W), mode="bilinear", align_corners=False)`` gives is sum_j weight_j * x[cell_j].
    Returns (N x 4 int64 flat cell indices into the h x w grid, N x 4 float32 weights summing to 1).
    """
    (big_h, big_w), (h, w) = out_size, in_size
    v = torch.div(flat, big_w, rounding_mode="floor")
    u = flat - v * big_w
    sy = ((v.float() + 0.5) * (h / big_h) - 0.5).clamp_min(0.0)
    sx = ((u.float() + 0.5) * (w / big_w) - 0.5).clamp_min(0.0)
    y0 = sy.floor().long().clamp_max(h - 1)
    x0 = sx.floor().long().clamp_max(w - 1)
    ly, lx = sy - y0.float(), sx - x0.float()
    y1 = (y0 + 1).clamp_max(h - 1)
    x1 = (x0 + 1).clamp_max(w - 1)
    cells = torch.stack((y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1), dim=1)
    weights = torch.stack(((1 - ly) * (1 - lx), (1 - ly) * lx, ly * (1 - lx), ly * lx), dim=1)
    return cells, weights
