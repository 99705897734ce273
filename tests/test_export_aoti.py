"""export_aoti refuses malformed frames and modules before compiling (the compiled package itself is
checked end to end in tests/test_cpp_runtime.py)."""

import pytest
import torch
from torch import nn

from radseg_edge.errors import InputError
from radseg_edge.export.aoti import export_aoti


class _WrongOutputs(nn.Module):
    def forward(self, frame):
        return frame.float().mean(-1)  # one tensor instead of (labels, probs)


class _Transposed(nn.Module):
    def forward(self, frame):
        probs = frame.permute(0, 3, 2, 1).float().softmax(1)  # 1 x 3 x W x H: wrong spatial order
        return probs.argmax(1), probs


@pytest.mark.parametrize(
    "frame",
    [torch.zeros(1, 32, 48, 3), torch.zeros(32, 48, 3, dtype=torch.uint8), torch.zeros(1, 3, 32, 48, dtype=torch.uint8)],
    ids=["float", "no_batch", "channels_first"],
)
def test_example_frame_must_be_1xHxWx3_uint8(tmp_path, frame):
    with pytest.raises(InputError, match="1 x H x W x 3 uint8"):
        export_aoti(_Transposed(), frame, tmp_path)


@pytest.mark.parametrize("module", [_WrongOutputs(), _Transposed()], ids=["one_output", "wrong_shape"])
def test_module_must_return_labels_and_probs_at_frame_size(tmp_path, module):
    with pytest.raises(InputError, match="labels"):
        export_aoti(module, torch.zeros(1, 32, 48, 3, dtype=torch.uint8), tmp_path)
    assert not (tmp_path / "model.pt2").exists()


def test_cli_aoti_format_needs_a_frame_size_and_a_vocabulary(tmp_path):
    import argparse

    from radseg_edge.cli._export_aoti import run_aoti

    args = argparse.Namespace(imgsz=None, vocab=None, out=str(tmp_path))
    with pytest.raises(InputError, match="--imgsz HxW and --vocab FILE"):
        run_aoti(args)
