"""A sparse voxel map that fuses per-pixel features or class probabilities from posed depth frames.

    vmap = VoxelMap(voxel_size=0.05)
    vmap.integrate(values, depth, intrinsics, pose)        # C x h x w features / K x h x w probs / h x w labels
    labels, scores = vmap.labels(vocabulary)               # per voxel
    vmap.query_points(xyz, vocabulary)                      # N world points -> N labels (-1: not observed)
    vmap.save("map.safetensors"); VoxelMap.load("map.safetensors").to_ply("map.ply", vocabulary)

Fusion (RADSEG.md "3D"): ``values`` on any grid h x w are upsampled bilinearly (align_corners=False, as the 2D
pipeline upsamples) to the depth resolution H x W; every valid depth pixel is back-projected and adds its value
to the voxel that contains it; a voxel keeps the running mean over all pixels that ever fell into it (weight =
pixel hits, so the result does not depend on the order of the frames). The upsampling is never materialised:
per frame, a sparse voxels x cells matrix of summed bilinear weights multiplies the h x w x C value grid, which
is exactly the sum over pixels of the upsampled values.

Storage: keys (V int64, packed voxel coordinates), the sums of the fused values (V x C fp32; the mean is
sum / hits, so a frame costs one scatter-add), hits (V int64 pixels), last_seen (V int32 frame index) and the
colour sums (V x 3 fp32) when RGB is given; a sorted index for look-ups. In
features mode the map also keeps what a text query needs to reproduce the 2D computation: the PCA basis (if
reduced) and the language head (if the fused features are the SCGA features, as RADSEG.md "3D" says).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from radseg_edge.core.predict import IGNORE_INDEX, class_probabilities, denoise_prompts, labels_from_probs
from radseg_edge.errors import InputError, VocabularyError
from radseg_edge.mapping.geometry import as_matrix, backproject, bilinear_taps, valid_depth
from radseg_edge.mapping.pca import FeaturePCA

FORMAT = "radseg-edge-voxelmap/1"
MODES = ("features", "probs", "labels")
BUDGET_POLICIES = ("drop", "evict")
_BITS = 21
_OFFSET = 1 << (_BITS - 1)
_MASK = (1 << _BITS) - 1
#: the 26 neighbour offsets plus the centre, for query_points
_NEIGHBOURS = torch.tensor([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=torch.int64)


def pack_keys(index: Tensor) -> Tensor:
    """N x 3 int64 voxel coordinates (each in [-2^20, 2^20)) -> N int64 keys (21 bits per axis)."""
    i = index + _OFFSET
    return (i[:, 0] << (2 * _BITS)) | (i[:, 1] << _BITS) | i[:, 2]


def unpack_keys(keys: Tensor) -> Tensor:
    """N int64 keys -> N x 3 int64 voxel coordinates."""
    return torch.stack(((keys >> (2 * _BITS)) & _MASK, (keys >> _BITS) & _MASK, keys & _MASK), dim=1) - _OFFSET


class VoxelMap:
    """Sparse voxel map of fused features or class probabilities (see the module docstring).

    Args:
        voxel_size: edge of a voxel in metres (paper: 0.05; RayFronts' Orin preset: 0.3).
        mode: "features", "probs" or "labels" (one-hot of integer labels, fused as probabilities); None = from
            the first :meth:`integrate` call (a 2-D integer tensor means labels, else features).
        depth_range: (min, max) metres; pixels outside it are not fused.
        max_voxels: the voxel budget. When a frame would create more voxels than remain, ``budget``
            decides: "drop" (default) keeps the map as it is and fuses the frame only into existing voxels
            and into as many new voxels as fit (those hit by the most pixels first), counting the rest in
            ``dropped_points``; "evict" removes the least-observed voxels (fewest pixel hits, then the least
            recently seen) down to 90 % of the budget, then inserts.
        feature_dims: features mode: reduce features to this many dimensions by a PCA fitted on the first
            ``pca_frames`` frames (buffered until then; :meth:`flush` fits early). None = keep all.
        class_names: probs / labels mode: the class names (optional; needed to check a query's vocabulary).
        num_classes: labels mode: K (default: class_names' length, else 1 + the largest label seen first).
        language_head: features mode: a module mapping fused features (N x C) to language space (N x D), applied
            at query time; None when the fused features are already language-aligned.
        text_model: the text model that the language space belongs to (checked against a query's vocabulary).
        device: where the map lives ("cpu", "cuda"); default cpu.
    """

    def __init__(
        self,
        voxel_size: float = 0.05,
        mode: str | None = None,
        depth_range: tuple[float, float] = (0.1, 10.0),
        max_voxels: int = 4_000_000,
        budget: str = "drop",
        feature_dims: int | None = None,
        pca_frames: int = 5,
        class_names: list[str] | None = None,
        num_classes: int | None = None,
        language_head: nn.Module | None = None,
        text_model: str = "",
        device: str | torch.device = "cpu",
    ) -> None:
        if not voxel_size > 0:
            raise InputError(f"voxel_size must be > 0 metres, got {voxel_size}")
        if mode is not None and mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if budget not in BUDGET_POLICIES:
            raise InputError(f"budget must be one of {', '.join(BUDGET_POLICIES)}, got {budget!r}")
        if max_voxels < 1:
            raise InputError(f"max_voxels must be >= 1, got {max_voxels}")
        lo, hi = (float(x) for x in depth_range)
        if not (0 <= lo < hi):
            raise InputError(f"depth_range must be (min, max) metres with 0 <= min < max, got {depth_range}")
        if feature_dims is not None and feature_dims < 1:
            raise InputError(f"feature_dims must be >= 1 (or None: no PCA), got {feature_dims}")
        if feature_dims is not None and mode in ("probs", "labels"):
            raise InputError("feature_dims (PCA) applies to features mode only")
        self.voxel_size = float(voxel_size)
        self.mode = mode
        self.depth_range = (lo, hi)
        self.max_voxels = int(max_voxels)
        self.budget = budget
        self.feature_dims = feature_dims
        self.pca_frames = max(int(pca_frames), 1)
        self.pca: FeaturePCA | None = None
        self.class_names = list(class_names) if class_names is not None else None
        self.num_classes = num_classes if num_classes is not None else (len(class_names) if class_names else None)
        self.language_head = language_head.eval() if language_head is not None else None
        self.text_model = text_model or ""
        self.device = torch.device(device)
        self.frames = 0
        self.dropped_points = 0
        self.evicted_voxels = 0
        self._pending: list[tuple] = []
        self._size = 0
        self._keys = torch.empty(0, dtype=torch.int64, device=self.device)
        self._sum: Tensor | None = None  # per-voxel sums of the fused values (mean = sum / hits)
        self._lang: Tensor | None = None  # cached language features (features mode; cleared by fusion)
        self.cache_language = True
        self._hits = torch.empty(0, dtype=torch.int64, device=self.device)
        self._last = torch.empty(0, dtype=torch.int32, device=self.device)
        self._rgb: Tensor | None = None
        self._skeys = torch.empty(0, dtype=torch.int64, device=self.device)  # sorted keys
        self._srows = torch.empty(0, dtype=torch.int64, device=self.device)  # their storage rows

    # -- contents ------------------------------------------------------------------------------------
    def __len__(self) -> int:
        self.flush()
        return self._size

    @property
    def channels(self) -> int:
        """C of the stored values (k after PCA); 0 before the first fusion."""
        return 0 if self._sum is None else int(self._sum.shape[1])

    @property
    def keys(self) -> Tensor:
        """V int64 packed voxel coordinates."""
        self.flush()
        return self._keys[: self._size]

    @property
    def values(self) -> Tensor:
        """V x C fused means (features, reduced features or probabilities)."""
        self.flush()
        if self._sum is None:
            return torch.empty(0, 0, device=self.device)
        return self._sum[: self._size] / self._hits[: self._size, None].clamp_min(1)

    @property
    def hits(self) -> Tensor:
        """V int64: pixels fused into each voxel."""
        self.flush()
        return self._hits[: self._size]

    @property
    def colors(self) -> Tensor | None:
        """V x 3 uint8 mean RGB of each voxel (None when no frame had colour)."""
        self.flush()
        if self._rgb is None:
            return None
        mean = self._rgb[: self._size] / self._hits[: self._size, None].clamp_min(1)
        return mean.round().clamp(0, 255).to(torch.uint8)

    def centers(self) -> Tensor:
        """V x 3 float32 world coordinates of the voxel centres (metres)."""
        return (unpack_keys(self.keys).float() + 0.5) * self.voxel_size

    def memory_bytes(self) -> int:
        """Bytes held by the used part of the voxel storage (keys, values, hits, colours, index)."""
        v, c = self._size, self.channels
        return v * (8 + 4 * c + 8 + 4 + (12 if self._rgb is not None else 0) + 16)

    # -- fusion --------------------------------------------------------------------------------------
    @torch.no_grad()
    def integrate(self, values, depth, intrinsics, pose, rgb=None) -> None:
        """Fuse one frame.

        Args:
            values: C x h x w features or K x h x w probabilities (any h x w: upsampled bilinearly to the
                depth resolution), or h x w integer labels (one-hot; negatives or >= K are not fused; resized
                to the depth resolution by nearest neighbour). Tensor or numpy.
            depth: H x W metres (float) ; NaN, 0, inf and values outside ``depth_range`` are invalid.
            intrinsics: 3 x 3 of the depth image; pose: 4 x 4 camera-to-world (OpenCV axes).
            rgb: optional H' x W' x 3 uint8 colour (resized to H x W by nearest neighbour) for :meth:`to_ply`.
        """
        values = torch.as_tensor(values)
        depth = torch.as_tensor(depth)
        if depth.dim() != 2:
            raise InputError(f"depth must be H x W (metres), got shape {tuple(depth.shape)}")
        k_mat = as_matrix(intrinsics, (3, 3), "intrinsics")
        pose = as_matrix(pose, (4, 4), "pose")
        is_labels = values.dim() == 2 and not torch.is_floating_point(values)
        if values.dim() != 3 and not is_labels:
            raise InputError(f"values must be C x h x w (features/probabilities) or h x w integer labels, got {tuple(values.shape)}")
        mode = "labels" if is_labels else ("features" if self.mode is None else self.mode)
        if self.mode is None:
            self.mode = mode
        if (self.mode == "labels") != is_labels:
            raise InputError(f"this map fuses {self.mode}; got {'integer labels' if is_labels else 'a C x h x w tensor'}")
        if self.mode == "features" and self.feature_dims is not None and self.pca is None:
            self._pending.append((values, depth, k_mat, pose, rgb))
            if len(self._pending) >= self.pca_frames:
                self.flush()
            return
        self._integrate(values, depth, k_mat, pose, rgb)

    def flush(self) -> None:
        """Fit the PCA on the buffered frames (if any) and fuse them. Called by every reader of the map."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        samples = torch.cat([v.to(self.device).float().flatten(1).T for v, *_ in pending])
        self.pca = FeaturePCA.fit(samples, int(self.feature_dims))
        for args in pending:
            self._integrate(*args)

    def _integrate(self, values: Tensor, depth: Tensor, k_mat: np.ndarray, pose: np.ndarray, rgb) -> None:
        dev = self.device
        depth = depth.to(dev).float()
        big_h, big_w = depth.shape
        mask = valid_depth(depth, *self.depth_range)
        if self.mode == "labels":
            labels = values.to(dev).long()
            if self.num_classes is None:
                self.num_classes = int(labels.max().item()) + 1 if labels.numel() else 1
            if tuple(labels.shape) != (big_h, big_w):
                labels = F.interpolate(labels[None, None].float(), (big_h, big_w), mode="nearest")[0, 0].long()
            mask &= (labels >= 0) & (labels < self.num_classes)
        points, flat = backproject(depth, k_mat, pose, mask)
        self.frames += 1
        if flat.numel() == 0:
            return
        keys = pack_keys(torch.floor(points / self.voxel_size).long())
        ukeys, inv = torch.unique(keys, return_inverse=True)
        nv = ukeys.shape[0]
        if self.mode == "labels":
            k = self.num_classes
            sums = torch.zeros(nv * k, device=dev).index_add_(0, inv * k + labels.reshape(-1)[flat], torch.ones_like(inv, dtype=torch.float32)).view(nv, k)
        else:
            grid = values.to(dev).float()
            c, h, w = grid.shape
            cells_values = grid.flatten(1).T  # (h*w) x C
            if self.pca is not None:
                cells_values = self.pca.transform(cells_values)
            if (h, w) == (big_h, big_w):
                rows, cols, wts = inv, flat, torch.ones_like(inv, dtype=torch.float32)
            else:
                cells, weights = bilinear_taps((big_h, big_w), (h, w), flat)
                rows, cols, wts = inv[:, None].expand(-1, 4).reshape(-1), cells.reshape(-1), weights.reshape(-1)
            splat = torch.sparse_coo_tensor(torch.stack((rows, cols)), wts, (nv, h * w), check_invariants=False).coalesce()
            sums = torch.sparse.mm(splat, cells_values.contiguous())
        counts = torch.bincount(inv, minlength=nv)
        color = None
        if rgb is not None:
            color = self._rgb_sums(rgb, (big_h, big_w), flat, inv, nv)
        self._merge(ukeys, sums, counts, color)

    def _rgb_sums(self, rgb, size: tuple[int, int], flat: Tensor, inv: Tensor, nv: int) -> Tensor:
        img = torch.as_tensor(np.ascontiguousarray(rgb) if isinstance(rgb, np.ndarray) else rgb).to(self.device)
        if img.dim() != 3 or img.shape[-1] != 3:
            raise InputError(f"rgb must be H x W x 3 uint8, got shape {tuple(img.shape)}")
        if tuple(img.shape[:2]) != size:
            img = F.interpolate(img.permute(2, 0, 1)[None].float(), size, mode="nearest")[0].permute(1, 2, 0)
        px = img.reshape(-1, 3)[flat].float()
        return torch.zeros(nv, 3, device=self.device).index_add_(0, inv, px)

    # -- storage -------------------------------------------------------------------------------------
    def _ensure_capacity(self, needed: int, channels: int) -> None:
        cap = self._keys.shape[0]
        if self._sum is None:
            self._sum = torch.empty(0, channels, device=self.device)
        elif self._sum.shape[1] != channels:
            raise InputError(f"this map holds {self._sum.shape[1]}-channel values; got {channels} channels")
        if needed <= cap:
            return
        new_cap = max(needed, int(cap * 1.5) + 1024)
        if self.max_voxels:
            new_cap = min(new_cap, max(needed, self.max_voxels))

        def grow(t: Tensor, *shape) -> Tensor:
            out = torch.zeros((new_cap, *shape), dtype=t.dtype, device=self.device)
            out[: self._size] = t[: self._size]
            return out

        self._keys = grow(self._keys)
        self._sum = grow(self._sum, channels)
        self._hits = grow(self._hits)
        self._last = grow(self._last)
        if self._rgb is not None:
            self._rgb = grow(self._rgb, 3)

    def _lookup(self, keys: Tensor) -> Tensor:
        """Storage rows of ``keys`` (-1 where absent)."""
        n = self._skeys.shape[0]
        if n == 0:
            return torch.full_like(keys, -1)
        pos = torch.searchsorted(self._skeys, keys).clamp_max(n - 1)
        found = self._skeys[pos] == keys
        return torch.where(found, self._srows[pos], torch.full_like(keys, -1))

    def _merge(self, ukeys: Tensor, sums: Tensor, counts: Tensor, color: Tensor | None) -> None:
        rows = self._lookup(ukeys)
        new = rows < 0
        n_new = int(new.sum())
        room = self.max_voxels - self._size
        if n_new > room and self.budget == "evict":
            self._evict(self._size + n_new - int(0.9 * self.max_voxels))
            rows = self._lookup(ukeys)
            new = rows < 0
            n_new = int(new.sum())
            room = self.max_voxels - self._size
        if n_new > room:  # drop: keep the new voxels hit by the most pixels
            new_idx = torch.nonzero(new).squeeze(1)
            order = torch.argsort(counts[new_idx], descending=True, stable=True)
            refused = new_idx[order[max(room, 0):]]
            self.dropped_points += int(counts[refused].sum())
            keep = torch.ones_like(new)
            keep[refused] = False
            ukeys, sums, counts, rows, new = ukeys[keep], sums[keep], counts[keep], rows[keep], new[keep]
            color = color[keep] if color is not None else None
            n_new = int(new.sum())
        self._ensure_capacity(self._size + n_new, sums.shape[1])
        if color is not None and self._rgb is None:
            self._rgb = torch.zeros(self._keys.shape[0], 3, device=self.device)
        start = self._size
        new_rows = torch.arange(start, start + n_new, device=self.device)
        rows = rows.clone()
        rows[new] = new_rows
        self._keys[new_rows] = ukeys[new]
        self._size += n_new
        # the weighted mean is kept as sum and hits: one scatter-add per frame, no gather of the old values
        self._sum.index_add_(0, rows, sums)
        if color is not None:
            self._rgb.index_add_(0, rows, color)
        self._hits.index_add_(0, rows, counts)
        self._lang = None
        self._last[rows] = self.frames
        if n_new:
            self._insert_sorted(ukeys[new], new_rows)

    def _insert_sorted(self, keys: Tensor, rows: Tensor) -> None:
        """Merge sorted new ``keys`` (absent from the map) into the sorted index in O(V + M log V)."""
        old = self._skeys
        n, m = old.shape[0], keys.shape[0]
        out_k = torch.empty(n + m, dtype=torch.int64, device=self.device)
        out_r = torch.empty_like(out_k)
        pos_old = torch.arange(n, device=self.device) + torch.searchsorted(keys, old)
        pos_new = torch.arange(m, device=self.device) + torch.searchsorted(old, keys)
        out_k[pos_old], out_r[pos_old] = old, self._srows
        out_k[pos_new], out_r[pos_new] = keys, rows
        self._skeys, self._srows = out_k, out_r

    def _evict(self, count: int) -> None:
        """Remove the ``count`` least-observed voxels (fewest hits, then least recently seen)."""
        count = min(max(count, 0), self._size)
        if count == 0:
            return
        v = self._size
        score = self._hits[:v].double() * 2.0**32 + self._last[:v].double()
        victims = torch.argsort(score, stable=True)[:count]
        keep = torch.ones(v, dtype=torch.bool, device=self.device)
        keep[victims] = False
        self._keys = self._keys[:v][keep]
        self._sum = self._sum[:v][keep]
        self._hits = self._hits[:v][keep]
        self._last = self._last[:v][keep]
        if self._rgb is not None:
            self._rgb = self._rgb[:v][keep]
        self._size = int(keep.sum())
        self._skeys, order = torch.sort(self._keys)
        self._srows = order
        self.evicted_voxels += count

    # -- queries -------------------------------------------------------------------------------------
    def _check_vocabulary(self, vocabulary) -> Tensor:
        emb = vocabulary.embeddings if hasattr(vocabulary, "embeddings") else torch.as_tensor(vocabulary)
        if emb.dim() != 2 or emb.shape[0] == 0:
            raise VocabularyError(f"class embeddings must be K x D with K >= 1, got shape {tuple(emb.shape)}")
        dim = self.language_head.out_dim if self.language_head is not None else (self.pca.in_dim if self.pca else self.channels)
        if emb.shape[1] != dim:
            raise VocabularyError(
                f"vocabulary embeddings are {emb.shape[1]}-d but this map's language space is {dim}-d; build the "
                f"vocabulary with the text model of the checkpoint that made the map ({self.text_model or 'unknown'})"
            )
        vt = getattr(vocabulary, "text_model", "unspecified")
        if self.text_model and vt not in ("unspecified", "", self.text_model):
            raise VocabularyError(f"vocabulary was built with {vt} but the map's features belong to {self.text_model}")
        return emb.to(self.device, torch.float32)

    def language_features(self, chunk: int = 65536) -> Tensor:
        """Features mode: V x D language-aligned features (PCA reconstruction, then the language head).

        Computed once and cached until the next fusion (unless ``cache_language`` is False; the cache holds
        V x D fp32): a second vocabulary then costs only the cosine."""
        if self.mode != "features":
            raise InputError(f"this map fused {self.mode}, not features: it has no language features")
        if self._lang is not None:
            return self._lang
        out = []
        values = self.values
        for i in range(0, values.shape[0], chunk):
            f = values[i : i + chunk]
            if self.pca is not None:
                f = self.pca.inverse(f)
            if self.language_head is not None:
                f = self.language_head(f)
            out.append(f.float())
        lang = torch.cat(out) if out else torch.empty(0, 0, device=self.device)
        if self.cache_language:
            self._lang = lang
        return lang

    @torch.no_grad()
    def probabilities(self, vocabulary=None, denoise: float = 0.5) -> Tensor:
        """V x K class probabilities per voxel.

        Features mode: softmax_k(100 cos(f, t_k)) of the language features (``vocabulary`` required), then
        prompt denoising over the whole map (a class whose maximum over all voxels is < ``denoise`` gets 0),
        as 2D denoises over the whole image. Probs / labels mode: the fused probabilities (each frame was
        already denoised in 2D; no second denoising); ``vocabulary``, if given, must have the fused names.
        """
        if self.mode in ("probs", "labels"):
            if vocabulary is not None and self.class_names is not None and list(vocabulary.names) != self.class_names:
                raise VocabularyError(
                    f"this map fused probabilities of {self.class_names}; querying other classes needs a map of "
                    "features (radseg-edge map --fuse features)"
                )
            return self.values.float()
        if vocabulary is None:
            raise VocabularyError("a features map needs a vocabulary to give labels")
        emb = self._check_vocabulary(vocabulary)
        feats = self.language_features()
        probs = class_probabilities(feats.T[None, :, :, None], emb)  # 1 x K x V x 1
        probs = denoise_prompts(probs, denoise, inplace=True)
        return probs[0, :, :, 0].T

    @torch.no_grad()
    def labels(self, vocabulary=None, denoise: float = 0.5, prediction_thresh: float = 0.1) -> tuple[Tensor, Tensor]:
        """(V int64 labels, V float32 scores): argmax of :meth:`probabilities`; label -1 (IGNORE_INDEX)
        where the maximum probability is below ``prediction_thresh`` (RADSEG.md "3D": 0.1)."""
        probs = self.probabilities(vocabulary, denoise)
        if probs.numel() == 0:
            empty = torch.empty(0, device=self.device)
            return empty.long(), empty
        scores, _ = probs.max(dim=1)
        labels = labels_from_probs(probs.T[None, :, :, None], prediction_thresh)[0, :, 0]
        return labels, scores

    @torch.no_grad()
    def query_points(self, xyz, vocabulary=None, denoise: float = 0.5, prediction_thresh: float = 0.1,
                     chunk: int = 65536) -> Tensor:
        """Labels of world points: N x 3 (metres) -> N int64, each the label of the nearest observed voxel
        centre among the point's voxel and its 26 neighbours (so within one voxel), -1 where none is observed."""
        pts = torch.as_tensor(xyz, dtype=torch.float32).to(self.device)
        if pts.dim() != 2 or pts.shape[1] != 3:
            raise InputError(f"xyz must be N x 3 world points, got shape {tuple(pts.shape)}")
        if len(self) == 0:
            return torch.full((pts.shape[0],), IGNORE_INDEX, dtype=torch.int64, device=self.device)
        labels, _ = self.labels(vocabulary, denoise, prediction_thresh)
        offsets = _NEIGHBOURS.to(self.device)
        out = []
        for i in range(0, pts.shape[0], chunk):
            p = pts[i : i + chunk]
            idx = torch.floor(p / self.voxel_size).long()[:, None, :] + offsets[None]  # n x 27 x 3
            rows = self._lookup(pack_keys(idx.reshape(-1, 3))).view(-1, 27)
            d = ((p[:, None, :] - (idx.float() + 0.5) * self.voxel_size) ** 2).sum(-1)
            d = torch.where(rows >= 0, d, torch.full_like(d, float("inf")))
            dmin, best = d.min(dim=1)
            row = rows.gather(1, best[:, None])[:, 0]
            out.append(torch.where(torch.isfinite(dmin), labels[row.clamp_min(0)], torch.full_like(row, IGNORE_INDEX)))
        return torch.cat(out)

    # -- files ---------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write a safetensors file: tensors keys, values, hits, last_seen, [colors], [pca_*], [head.*];
        metadata: format, mode, voxel size, settings, class names, text model, language head shape."""
        from safetensors.torch import save_file

        from radseg_edge.models.heads import MLP2

        self.flush()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        v = self._size
        tensors = {
            "keys": self._keys[:v], "sums": self._sum[:v] if self._sum is not None else torch.empty(0, 0),
            "hits": self._hits[:v], "last_seen": self._last[:v],
        }
        if self._rgb is not None:
            tensors["color_sums"] = self._rgb[:v]
        if self.pca is not None:
            tensors["pca_mean"], tensors["pca_components"] = self.pca.mean, self.pca.components
        head = None
        if self.language_head is not None:
            if not isinstance(self.language_head, MLP2):
                raise InputError(f"only an MLP2 language head can be saved with a map, got {type(self.language_head).__name__}")
            m = self.language_head
            head = [m.in_dim, m.fc1.out_features, m.out_dim, len(m.blocks)]
            tensors.update({f"head.{k}": t for k, t in m.state_dict().items()})
        meta = {
            "format": FORMAT, "mode": self.mode or "", "voxel_size": repr(self.voxel_size),
            "depth_range": json.dumps(self.depth_range), "max_voxels": str(self.max_voxels), "budget": self.budget,
            "feature_dims": json.dumps(self.feature_dims), "pca_frames": str(self.pca_frames),
            "class_names": json.dumps(self.class_names), "num_classes": json.dumps(self.num_classes),
            "text_model": self.text_model, "language_head": json.dumps(head), "frames": str(self.frames),
            "dropped_points": str(self.dropped_points), "evicted_voxels": str(self.evicted_voxels),
        }
        tmp = path.with_name(path.name + ".tmp")
        save_file({k: t.detach().contiguous().cpu() for k, t in tensors.items()}, str(tmp), metadata=meta)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> VoxelMap:
        """Read a map written by :meth:`save`."""
        from safetensors import SafetensorError, safe_open

        from radseg_edge.models.heads import MLP2

        p = Path(path)
        if not p.is_file():
            raise InputError(f"map file not found: {p}")
        try:
            with safe_open(str(p), "pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError) as exc:
            raise InputError(f"{p}: not a radseg-edge voxel map ({exc})") from None
        if meta.get("format", "").split("/")[0] != FORMAT.split("/")[0]:
            raise InputError(f"{p}: safetensors file without radseg-edge voxel map metadata (written by `radseg-edge map`?)")
        head = None
        shape = json.loads(meta.get("language_head", "null"))
        if shape is not None:
            head = MLP2(*shape)
            head.load_state_dict({k[5:]: t for k, t in tensors.items() if k.startswith("head.")})
        vmap = cls(
            voxel_size=float(meta["voxel_size"]), mode=meta["mode"] or None,
            depth_range=tuple(json.loads(meta["depth_range"])), max_voxels=int(meta["max_voxels"]),
            budget=meta["budget"], class_names=json.loads(meta["class_names"]),
            num_classes=json.loads(meta["num_classes"]), language_head=head.to(device) if head else None,
            text_model=meta.get("text_model", ""), device=device,
        )
        vmap.feature_dims = json.loads(meta["feature_dims"])
        vmap.pca_frames = int(meta["pca_frames"])
        vmap.frames, vmap.dropped_points = int(meta["frames"]), int(meta["dropped_points"])
        vmap.evicted_voxels = int(meta.get("evicted_voxels", 0))
        if "pca_mean" in tensors:
            vmap.pca = FeaturePCA(tensors["pca_mean"], tensors["pca_components"]).to(device)
        v = tensors["keys"].shape[0]
        vmap._size = v
        vmap._keys = tensors["keys"].to(device)
        vmap._sum = tensors["sums"].float().to(device) if v else None
        vmap._hits = tensors["hits"].to(device)
        vmap._last = tensors["last_seen"].to(device)
        vmap._rgb = tensors["color_sums"].float().to(device) if "color_sums" in tensors else None
        vmap._skeys, vmap._srows = torch.sort(vmap._keys)
        return vmap

    def to_ply(self, path: str | Path, vocabulary=None, denoise: float = 0.5, prediction_thresh: float = 0.1) -> Path:
        """Write the voxel centres as a binary PLY point cloud (x y z float, red green blue uchar).

        Colours: by class (the segmentation palette; label property added) when the map has probabilities or
        a ``vocabulary`` is given for a features map; else the mean RGB; else grey. Unlabelled voxels are black.
        """
        from radseg_edge.mapping.ply import write_ply

        self.flush()
        xyz = self.centers().cpu().numpy()
        labels = None
        if self.mode in ("probs", "labels") or vocabulary is not None:
            labels = self.labels(vocabulary, denoise, prediction_thresh)[0].cpu().numpy()
            from radseg_edge.runtime.overlay import colorize

            k = len(vocabulary.names) if vocabulary is not None else (self.num_classes or self.channels)
            colors = colorize(labels, k)
        elif self._rgb is not None:
            colors = self.colors.cpu().numpy()
        else:
            colors = np.full((xyz.shape[0], 3), 160, np.uint8)
        return write_ply(path, xyz, colors, labels)
