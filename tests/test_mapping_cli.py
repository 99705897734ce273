"""Mapper with the tiny checkpoint, and `radseg-edge map` / `map-query` end to end on a synthetic sequence."""

import json

import numpy as np
import pytest
import torch

from radseg_edge.cli import main
from radseg_edge.errors import InputError
from radseg_edge.mapping import Mapper, VoxelMap
from radseg_edge.mapping.ply import read_ply, write_ply
from radseg_edge.mapping.synthetic import SyntheticScene, surface_points, write_sequence
from radseg_edge.models.text import Vocabulary
from radseg_edge.pipeline import RADSeg
from tests.conftest import TINY_CKPT

SIZE = (96, 128)  # multiples of 16: one pass per frame (crop 0) keeps the tiny model fast


def _vocab(names, seed):
    return Vocabulary.from_embeddings(names, torch.randn(len(names), 64, generator=torch.Generator().manual_seed(seed)))


@pytest.fixture(scope="module")
def frames():
    return SyntheticScene().sequence(3, SIZE, noise=0.005, seed=0)


def _map(seg, frames, vocab, **kw):
    mapper = Mapper(seg, voxel_size=0.15, vocabulary=vocab, **kw)
    for f in frames:
        mapper.add_frame(f)
    return mapper


def test_querying_a_features_map_with_a_second_vocabulary_equals_fusing_with_it_from_the_start(tiny_radio, frames):
    first, second = _vocab(["floor", "wall", "box"], 0), _vocab(["chair", "lamp", "rug", "door"], 1)
    seg = RADSeg(tiny_radio, crop=0)
    a = _map(seg, frames, first).map
    b = _map(seg, frames, second).map
    assert a.mode == "features" and a.channels == seg.language_head.in_dim  # SCGA features, head at query time
    labels_a, scores_a = a.labels(second)
    labels_b, scores_b = b.labels(second)
    assert torch.equal(labels_a, labels_b) and torch.equal(scores_a, scores_b)
    # the query is the 2D computation per voxel: language head, then softmax of 100 * cos, then denoising
    from radseg_edge.core.predict import class_probabilities, denoise_prompts

    lang = seg.language_features(a.values.T[None, :, :, None])
    expect = denoise_prompts(class_probabilities(lang, second.embeddings), 0.5)[0, :, :, 0].T
    torch.testing.assert_close(a.probabilities(second), expect, atol=1e-5, rtol=1e-5)


def test_a_voxel_covering_the_whole_frame_holds_the_mean_scga_feature_of_the_frame(tiny_radio):
    """Bilinear upsampling by an integer factor (16) weights every patch equally, so one voxel that every
    pixel falls into holds exactly the mean of the frame's SCGA features."""
    seg = RADSeg(tiny_radio, crop=0)
    vocab = _vocab(["a", "b"], 3)
    rgb = (np.random.default_rng(0).random((32, 48, 3)) * 255).astype(np.uint8)
    depth = np.ones((32, 48), np.float32)
    k = SyntheticScene.intrinsics((32, 48))
    pose = np.eye(4)
    pose[:3, 3] = (5.0, 5.0, 4.0)  # the wall (1 m ahead) falls in the voxel [0, 10)^3
    mapper = Mapper(seg, voxel_size=10.0, vocabulary=vocab, depth_range=(0.1, 2.0))
    result = mapper.add_frame(rgb=rgb, depth=depth, intrinsics=k, pose=pose)
    assert len(mapper.map) == 1
    feats = result.scga_features[0]
    torch.testing.assert_close(mapper.map.values[0], feats.mean((1, 2)), atol=1e-4, rtol=1e-4)


def test_probability_fusion_works_with_any_backend_result(tiny_radio, frames):
    vocab = _vocab(["floor", "wall", "box"], 0)
    seg = RADSeg(tiny_radio, crop=0)
    m = _map(seg, frames, vocab, fuse="probs").map
    assert m.mode == "probs" and m.class_names == ["floor", "wall", "box"] and m.channels == 3
    sums = m.values.sum(1)
    assert (sums <= 1 + 1e-4).all()  # denoised probabilities average to at most 1

    class ProbsOnly:  # what an exported backend returns: probabilities, no scga_features
        def __call__(self, image, text=None, channel_order="rgb"):
            return seg(image, text, channel_order=channel_order)

        @property
        def radseg(self):
            return None

    with pytest.raises(InputError, match="torch backend"):
        Mapper(ProbsOnly(), vocabulary=vocab, fuse="features")
    Mapper(ProbsOnly(), vocabulary=vocab, fuse="probs").add_frame(frames[0])


def test_map_command_end_to_end_then_map_query_with_a_new_vocabulary(tmp_path, frames, capsys):
    seq = write_sequence(tmp_path / "seq", frames, "replica")
    v1 = _vocab(["floor", "wall", "box"], 0).save(tmp_path / "v1.safetensors")
    v2 = _vocab(["table", "window"], 5).save(tmp_path / "v2.safetensors")
    out = tmp_path / "map.safetensors"
    prof = tmp_path / "prof.json"
    code = main(["map", str(seq), "--layout", "replica", "--vocab", str(v1), "-o", str(out), "--ply", str(tmp_path / "m.ply"),
                 "--checkpoint", str(TINY_CKPT), "--device", "cpu", "--crop", "0", "--voxel", "0.2",
                 "--feature-dims", "16", "--pca-frames", "2", "--every", "1", "--profile", str(prof)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "segment" in err and "fuse" in err and "ms/frame" in err
    stages = json.loads(prof.read_text())["stages"]
    assert stages["segment"]["count"] == 3 and stages["fuse"]["count"] == 3
    vmap = VoxelMap.load(out)
    assert vmap.channels == 16 and vmap.pca is not None and vmap.language_head is not None and vmap.frames == 3
    assert len(read_ply(tmp_path / "m.ply")["x"]) == len(vmap)
    code = main(["map-query", str(out), "--vocab", str(v2), "--ply", str(tmp_path / "q.ply"), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["voxels"] == len(vmap) and set(summary["per_class"]) == {"table", "window"}
    assert sum(summary["per_class"].values()) + summary["unlabelled"] == len(vmap)
    labels = read_ply(tmp_path / "q.ply")["label"]
    assert torch.equal(torch.from_numpy(labels.astype(np.int64)), vmap.labels(Vocabulary.load(v2))[0])
    # the paper's 3D protocol on the command line: kNN (k = 5) voting against a labelled point cloud
    xyz, gt = surface_points(frames)
    write_ply(tmp_path / "gt.ply", xyz, np.zeros((len(xyz), 3), np.uint8), gt)
    v4 = _vocab(["floor", "wall", "box", "cabinet"], 7).save(tmp_path / "v4.safetensors")
    assert main(["map-query", str(out), "--vocab", str(v4), "--eval", str(tmp_path / "gt.ply"), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert 0.0 <= scored["miou"] <= 1.0 and set(scored["iou"]) == {"floor", "wall", "box", "cabinet"}
    # a features map without a vocabulary, and a wrong layout: one-line errors
    assert main(["map-query", str(out)]) == 1
    assert "--vocab" in capsys.readouterr().err
    assert main(["map", str(seq), "--layout", "tum", "--vocab", str(v1), "-o", str(out), "--checkpoint", str(TINY_CKPT)]) == 1
    assert "rgb.txt" in capsys.readouterr().err
