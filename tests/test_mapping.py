"""3D mapping: voxel fusion against known synthetic geometry, budget, PCA, queries, files, readers, 3D eval."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from radseg_edge.core.predict import class_probabilities
from radseg_edge.errors import InputError, VocabularyError
from radseg_edge.mapping import FeaturePCA, VoxelMap, open_sequence
from radseg_edge.mapping.evaluate import evaluate_labels, evaluate_map, knn_labels
from radseg_edge.mapping.geometry import backproject, matrix_to_quaternion, quaternion_to_matrix, valid_depth
from radseg_edge.mapping.ply import read_ply
from radseg_edge.mapping.synthetic import SyntheticScene, surface_points, write_sequence
from radseg_edge.mapping.voxel_map import pack_keys, unpack_keys
from radseg_edge.models.heads import MLP2
from radseg_edge.models.text import Vocabulary


@pytest.fixture(scope="module")
def scene():
    return SyntheticScene()


@pytest.fixture(scope="module")
def views(scene):
    """(5 noisy frames, the same 5 noise-free frames) at 120 x 160."""
    return scene.sequence(5, (120, 160), noise=0.01, seed=0), scene.sequence(5, (120, 160), noise=0.0)


def test_fusing_ground_truth_labels_from_5_noisy_views_puts_98_percent_of_surface_points_in_the_right_class(views):
    noisy, clean = views
    vmap = VoxelMap(0.05)
    for f in noisy:
        vmap.integrate(torch.from_numpy(f.labels), f.depth, f.intrinsics, f.pose, rgb=f.rgb)
    assert vmap.mode == "labels" and vmap.num_classes == 4 and vmap.frames == 5
    xyz, gt = surface_points(clean)
    xyz, gt = xyz[::3], gt[::3]  # 32k of the 96k ground-truth surface points (test time)
    pred = vmap.query_points(xyz).numpy()
    accuracy = (pred == gt).mean()
    assert accuracy >= 0.98, accuracy
    for c in range(4):  # every class, not only the large ones
        assert (pred[gt == c] == c).mean() >= 0.95
    scores = evaluate_map(vmap, xyz, gt)  # the paper's protocol: kNN (k = 5) voting, mIoU
    assert scores.miou >= 0.95


def test_fusion_equals_bilinear_upsampling_then_mean_per_voxel(scene):
    """The sparse splat is exactly F.interpolate(bilinear) to the depth size, then the mean over each voxel."""
    f = scene.sequence(1, (48, 64))[0]
    values = torch.randn(6, 5, 7, generator=torch.Generator().manual_seed(0))
    vmap = VoxelMap(0.1)
    vmap.integrate(values, f.depth, f.intrinsics, f.pose)
    depth = torch.from_numpy(f.depth)
    pts, flat = backproject(depth, f.intrinsics, f.pose, valid_depth(depth, 0.1, 10.0))
    up = F.interpolate(values[None], (48, 64), mode="bilinear", align_corners=False)[0].flatten(1).T[flat]
    keys = pack_keys(torch.floor(pts / 0.1).long())
    for i in range(0, len(vmap), max(1, len(vmap) // 25)):
        key = vmap.keys[i]
        expect = up[keys == key].mean(0)
        torch.testing.assert_close(vmap.values[i], expect, atol=1e-5, rtol=1e-5)
        assert vmap.hits[i] == int((keys == key).sum())


def test_running_mean_is_independent_of_frame_order_and_invalid_depth_is_skipped(views):
    noisy, _ = views
    rng = np.random.default_rng(0)
    vals = [torch.from_numpy(rng.random((3, 12, 16), dtype=np.float32)) for _ in noisy]
    a, b = VoxelMap(0.1), VoxelMap(0.1)
    for f, v in zip(noisy, vals, strict=False):
        a.integrate(v, f.depth, f.intrinsics, f.pose)
    for f, v in reversed(list(zip(noisy, vals, strict=False))):
        b.integrate(v, f.depth, f.intrinsics, f.pose)
    assert torch.equal(torch.sort(a.keys).values, torch.sort(b.keys).values)
    oa, ob = torch.argsort(a.keys), torch.argsort(b.keys)
    torch.testing.assert_close(a.values[oa], b.values[ob], atol=1e-5, rtol=1e-5)
    bad = np.full_like(noisy[0].depth, np.nan)
    bad[0, :4] = (0.0, np.inf, 50.0, -1.0)  # zero, inf, beyond depth_max, negative
    c = VoxelMap(0.1)
    c.integrate(vals[0], bad, noisy[0].intrinsics, noisy[0].pose)
    assert len(c) == 0 and c.frames == 1


def test_voxel_budget_drop_keeps_existing_voxels_and_evict_removes_the_least_observed(views):
    noisy, _ = views
    full = VoxelMap(0.1)
    for f in noisy[:2]:
        full.integrate(torch.from_numpy(f.labels), f.depth, f.intrinsics, f.pose)
    first = VoxelMap(0.1)
    first.integrate(torch.from_numpy(noisy[0].labels), noisy[0].depth, noisy[0].intrinsics, noisy[0].pose)
    budget = len(first) + 10
    drop = VoxelMap(0.1, max_voxels=budget)
    evict = VoxelMap(0.1, max_voxels=budget, budget="evict")
    for f in noisy[:2]:
        drop.integrate(torch.from_numpy(f.labels), f.depth, f.intrinsics, f.pose)
        evict.integrate(torch.from_numpy(f.labels), f.depth, f.intrinsics, f.pose)
    assert len(drop) == budget and drop.dropped_points > 0
    assert set(first.keys.tolist()) <= set(drop.keys.tolist())  # nothing already mapped was lost
    assert len(evict) <= budget and evict.evicted_voxels > 0 and evict.dropped_points == 0
    # eviction removes the least observed: every kept voxel has at least as many hits as any evicted one
    hits = dict(zip(full.keys.tolist(), full.hits.tolist(), strict=True))
    full._evict(len(full) // 3)
    kept = set(full.keys.tolist())
    gone = [h for k, h in hits.items() if k not in kept]
    assert len(gone) == len(hits) // 3 and max(gone) <= min(full.hits.tolist())
    # look-ups still work after compaction
    assert (evict.query_points(evict.centers()) >= 0).all()


def test_query_points_returns_minus_one_away_from_observed_voxels(views):
    noisy, _ = views
    vmap = VoxelMap(0.05)
    f = noisy[0]
    vmap.integrate(torch.from_numpy(f.labels), f.depth, f.intrinsics, f.pose)
    far = torch.tensor([[100.0, 100.0, 100.0], [-3.0, 2.0, 1.0]])
    assert vmap.query_points(far).tolist() == [-1, -1]
    centres = vmap.centers()[:50]
    labels, _ = vmap.labels()
    assert torch.equal(vmap.query_points(centres + 0.02), labels[:50])  # within one voxel: the nearest centre


def test_pca_is_exact_at_full_rank_and_an_affine_map(views):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 16, generator=g) @ torch.randn(16, 16, generator=g)
    full = FeaturePCA.fit(x, 16)
    torch.testing.assert_close(full.inverse(full.transform(x)), x, atol=1e-4, rtol=1e-4)
    pca = FeaturePCA.fit(x, 4)
    assert pca.components.shape == (4, 16)
    torch.testing.assert_close(pca.components @ pca.components.T, torch.eye(4), atol=1e-5, rtol=0)
    # mean of the reduced features == reduction of the mean (what makes fusion + PCA exact)
    torch.testing.assert_close(pca.transform(x).mean(0), pca.transform(x.mean(0, keepdim=True))[0], atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def small(scene):
    """3 noisy frames at 60 x 80 (features tests)."""
    return scene.sequence(3, (60, 80), noise=0.01, seed=1), None


def _features_map(views, feature_dims=None, head=None):
    noisy, _ = views
    g = torch.Generator().manual_seed(1)
    vmap = VoxelMap(0.1, feature_dims=feature_dims, pca_frames=3, language_head=head, text_model="test/text")
    for f in noisy:
        vmap.integrate(torch.randn(24, 8, 10, generator=g), f.depth, f.intrinsics, f.pose, rgb=f.rgb)
    return vmap


def test_features_map_query_applies_pca_then_language_head_then_100cos_softmax_and_map_wide_denoising(small):
    views = small
    head = MLP2(24, 32, 12, 1)
    torch.nn.init.normal_(head.final[2].weight, std=0.5)
    vmap = _features_map(views, feature_dims=24, head=head)  # full-rank PCA: a lossless change of basis
    raw = _features_map(views, head=head)
    vocab = Vocabulary.from_embeddings(["a", "b", "c"], torch.randn(3, 12, generator=torch.Generator().manual_seed(2)))
    with torch.no_grad():
        expect = class_probabilities(head(raw.values).T[None, :, :, None], vocab.embeddings)[0, :, :, 0].T
    expect = expect * (expect.max(0).values >= 0.5)
    torch.testing.assert_close(vmap.probabilities(vocab), expect, atol=2e-4, rtol=1e-3)
    labels, scores = vmap.labels(vocab, prediction_thresh=0.0)
    assert torch.equal(labels, expect.argmax(1)) or (labels != expect.argmax(1)).float().mean() < 1e-3
    with pytest.raises(VocabularyError, match="12-d|language space"):
        vmap.labels(Vocabulary.from_embeddings(["a"], torch.randn(1, 7)))
    with pytest.raises(VocabularyError, match="text"):
        vmap.labels(Vocabulary.from_embeddings(["a"], torch.randn(1, 12), text_model="other/model"))


def test_pca_is_fitted_on_the_first_frames_and_reduces_storage(small):
    vmap = _features_map(small, feature_dims=5)
    assert vmap.pca is not None and vmap.pca.out_dim == 5 and vmap.channels == 5 and vmap.frames == 3


def test_save_load_round_trip_keeps_every_tensor_setting_pca_and_language_head(tmp_path, small):
    views = small
    head = MLP2(24, 32, 12, 2)
    vmap = _features_map(views, feature_dims=6, head=head)
    path = vmap.save(tmp_path / "m.safetensors")
    back = VoxelMap.load(path)
    for name in ("keys", "values", "hits"):
        assert torch.equal(getattr(vmap, name), getattr(back, name)), name
    assert torch.equal(vmap.colors, back.colors)
    assert (back.voxel_size, back.mode, back.frames, back.text_model) == (0.1, "features", 3, "test/text")
    assert torch.equal(back.pca.components, vmap.pca.components)
    vocab = Vocabulary.from_embeddings(["a", "b"], torch.randn(2, 12))
    torch.testing.assert_close(back.probabilities(vocab), vmap.probabilities(vocab))
    assert torch.equal(back.query_points(vmap.centers(), vocab), vmap.query_points(vmap.centers(), vocab))
    # the loaded map keeps fusing
    f = views[0][0]
    back.integrate(torch.randn(24, 8, 10), f.depth, f.intrinsics, f.pose)
    assert back.frames == 4
    ply = read_ply(back.to_ply(tmp_path / "m.ply", vocab))
    assert len(ply["x"]) == len(back) and set(np.unique(ply["label"])) <= {-1, 0, 1}
    with pytest.raises(InputError, match="not found"):
        VoxelMap.load(tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"nonsense")
    with pytest.raises(InputError, match="voxel map"):
        VoxelMap.load(tmp_path / "bad.safetensors")


def test_probability_maps_refuse_a_different_vocabulary(views):
    noisy, _ = views
    vmap = VoxelMap(0.1, mode="probs", class_names=["x", "y"])
    f = noisy[0]
    vmap.integrate(torch.softmax(torch.randn(2, 6, 8), 0), f.depth, f.intrinsics, f.pose)
    vmap.labels(Vocabulary.from_embeddings(["x", "y"], torch.randn(2, 4)))
    with pytest.raises(VocabularyError, match="features"):
        vmap.labels(Vocabulary.from_embeddings(["x", "z"], torch.randn(2, 4)))


def test_bad_inputs_give_clear_errors(views):
    f = views[0][0]
    with pytest.raises(InputError, match="voxel_size"):
        VoxelMap(0.0)
    with pytest.raises(InputError, match="intrinsics"):
        VoxelMap().integrate(torch.randn(2, 4, 4), f.depth, np.eye(4), f.pose)
    with pytest.raises(InputError, match="depth"):
        VoxelMap().integrate(torch.randn(2, 4, 4), f.depth[None], f.intrinsics, f.pose)
    m = VoxelMap(mode="features")
    with pytest.raises(InputError, match="labels"):
        m.integrate(torch.zeros(4, 4, dtype=torch.long), f.depth, f.intrinsics, f.pose)


def test_key_packing_round_trips_negative_and_large_coordinates():
    idx = torch.tensor([[0, 0, 0], [-1, 5, -7], [2**20 - 1, -(2**20), 12345]])
    assert torch.equal(unpack_keys(pack_keys(idx)), idx)


def test_quaternions_round_trip(scene):
    for pose in scene.poses(4):
        q = matrix_to_quaternion(pose[:3, :3])
        np.testing.assert_allclose(quaternion_to_matrix(*q), pose[:3, :3], atol=1e-9)


# -- readers ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["replica", "scannet", "tum"])
def test_reader_reads_back_a_synthetic_sequence_of_its_layout(tmp_path, scene, layout):
    frames = scene.sequence(3, (48, 64))
    root = tmp_path / ("rgbd_dataset_freiburg1_synthetic" if layout == "tum" else "seq")
    write_sequence(root, frames, layout)
    if layout == "scannet":  # a lost-tracking pose (-inf) is skipped
        (root / "pose" / "1.txt").write_text("\n".join(["-inf -inf -inf -inf"] * 4))
    seq = open_sequence(root, layout)
    expect = [frames[0], frames[2]] if layout == "scannet" else frames
    assert len(seq) == len(expect)
    scale = {"replica": 6553.5, "scannet": 1000.0, "tum": 5000.0}[layout]
    for got, want in zip(seq, expect, strict=False):
        assert got.rgb.shape == want.rgb.shape and got.rgb.dtype == np.uint8  # ScanNet colour resized to depth
        np.testing.assert_allclose(got.depth, want.depth, atol=0.51 / scale)
        np.testing.assert_allclose(got.intrinsics, want.intrinsics, atol=1e-5)
        np.testing.assert_allclose(got.pose, want.pose, atol=1e-6)
        assert np.abs(got.rgb.astype(int) - want.rgb.astype(int)).mean() < 8  # jpeg
    assert len(open_sequence(root, layout, every=2)) == (len(expect) + 1) // 2


def test_tum_association_and_intrinsics_by_camera_name(tmp_path, scene):
    frames = scene.sequence(2, (48, 64))
    root = write_sequence(tmp_path / "rgbd_dataset_freiburg3_office", frames, "tum")
    (root / "intrinsics.txt").unlink()
    seq = open_sequence(root, "tum")
    assert seq.intrinsics[0, 0] == 535.4 and len(seq) == 2
    np.testing.assert_allclose(seq[1].pose, frames[1].pose, atol=1e-6)  # not the unrelated pose 0.1 s earlier
    lines = (root / "rgb.txt").read_text().splitlines()
    (root / "rgb.txt").write_text("\n".join(lines[:2]) + "\n")  # the second depth frame loses its rgb
    assert len(open_sequence(root, "tum")) == 1


def test_readers_explain_a_wrong_layout(tmp_path):
    (tmp_path / "x").mkdir()
    for layout, message in (("replica", "cam_params.json"), ("scannet", "color/"), ("tum", "rgb.txt")):
        with pytest.raises(InputError, match=message):
            open_sequence(tmp_path / "x", layout)
    with pytest.raises(InputError, match="not found"):
        open_sequence(tmp_path / "nope", "replica")


# -- 3D evaluation ------------------------------------------------------------------------------------
def test_knn_vote_and_miou_on_synthetic_points():
    rng = np.random.default_rng(0)
    vox = rng.random((400, 3)) * 4
    vlab = (vox[:, 0] > 2).astype(np.int64)
    pts = rng.random((2000, 3)) * 4
    gt = (pts[:, 0] > 2).astype(np.int64)
    scores = evaluate_labels(vox, vlab, pts, gt, num_classes=2, k=5)
    assert scores.miou > 0.9
    flipped = evaluate_labels(vox, 1 - vlab, pts, gt, num_classes=2, k=5)
    assert flipped.miou < 0.1
    # majority of 5: four neighbours of class 1 beat the nearest one of class 0; ties go to the nearest
    ref = np.array([[0, 0, 0], [1, 0, 0], [1.1, 0, 0], [1.2, 0, 0], [1.3, 0, 0]], dtype=float)
    assert knn_labels(ref, np.array([0, 1, 1, 1, 1]), np.zeros((1, 3)), k=5).tolist() == [1]
    assert knn_labels(ref[:4], np.array([0, 0, 1, 1]), np.zeros((1, 3)), k=4).tolist() == [0]
