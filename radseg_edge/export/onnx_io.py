"""Saving and loading ONNX models: weights inline below 2 GB, in one external data file above."""

from __future__ import annotations

import os
from pathlib import Path

#: protobuf's hard limit is 2 GiB; keep a margin for the graph itself.
INLINE_LIMIT_BYTES = 1_800_000_000


def model_weight_bytes(model) -> int:
    """Bytes of raw initializer data (inline or external) of an ONNX ModelProto."""
    total = 0
    for init in model.graph.initializer:
        if init.raw_data:
            total += len(init.raw_data)
        else:
            for entry in init.external_data:
                if entry.key == "length":
                    total += int(entry.value)
    return total


def save_model(model, path: str | os.PathLike) -> Path:
    """Save ``model`` to ``path``; weights go to ``<name>.data`` beside it when they exceed ~1.8 GB."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    external = model_weight_bytes(model) > INLINE_LIMIT_BYTES
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=1024)
    else:
        onnx.save_model(model, str(path))
    return path
