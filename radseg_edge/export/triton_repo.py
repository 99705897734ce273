"""A Triton Inference Server model repository for the fixed-size pipeline (``export --format triton``).

    repo/
      radseg/                       the model (name: --triton-model, default "radseg")
        config.pbtxt                platform onnxruntime_onnx, max_batch_size, dynamic_batching,
                                    instance_group, version_policy, model_warmup, class names
        1/model.onnx                frames B x H x W x 3 uint8 RGB -> labels B x H x W int64,
                                    probs B x K x H x W fp32 (vocabulary built in; B dynamic)
        labels.txt                  the K class names (Triton's label_filename of ``probs``)
        manifest.json               radseg-edge's manifest: accuracy-gate record, versions, geometry
        vocabulary.safetensors
      radseg_trt/                   only when TensorRT and a GPU are present where the export runs
        config.pbtxt                platform tensorrt_plan (same inputs/outputs)
        1/model.plan                the engine (fp32; never built on the CPU-only development machine)
        manifest.json               the engine key (GPU, SM, TensorRT, CUDA, ONNX hash) and the gate record

The folder ``repo/radseg`` is also an export folder for the local backends (``--export-dir repo/radseg``)
and for ``radseg-edge serve``. The ONNX graph is the one of :class:`radseg_edge.export.fixed.FixedResolutionPipeline`
with a dynamic batch: Triton's dynamic batcher stacks frames of several cameras of the same size.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from radseg_edge.errors import InputError, require
from radseg_edge.export.manifest import Manifest

#: instance kinds of config.pbtxt's instance_group.
INSTANCE_KINDS = {"cpu": "KIND_CPU", "gpu": "KIND_GPU", "auto": "KIND_AUTO"}


@dataclass
class TritonRepoOptions:
    """Settings of the Triton model repository (see docs/serving.md).

    Attributes:
        model_name: the model's folder and name in Triton ("radseg").
        max_batch_size: the largest batch the dynamic batcher forms (frames of several cameras).
        preferred_batch_sizes: batch sizes the batcher waits for (default: the powers of 2 up to max).
        max_queue_delay_us: how long a request may wait for others to form a batch (microseconds).
        instances: model instances (parallel executions) per device.
        kind: "gpu", "cpu" or "auto" (instance_group kind).
        gpus: GPU indices for kind "gpu" (empty: all).
        version: the version folder written.
        num_versions: version_policy: serve the latest this many versions.
        warmup: add a model_warmup entry (zero frames, batch 1 and max) so the first request is not slow.
    """

    model_name: str = "radseg"
    max_batch_size: int = 8
    preferred_batch_sizes: list[int] | None = None
    max_queue_delay_us: int = 2000
    instances: int = 1
    kind: str = "gpu"
    gpus: list[int] = field(default_factory=list)
    version: int = 1
    num_versions: int = 1
    warmup: bool = True

    def check(self) -> None:
        if not self.model_name or any(c in self.model_name for c in "/\\ ") or self.model_name.startswith("."):
            raise InputError(f"--triton-model must be a plain folder name, got {self.model_name!r}")
        if self.max_batch_size < 1:
            raise InputError(f"--max-batch must be >= 1, got {self.max_batch_size}")
        if self.instances < 1:
            raise InputError(f"--instances must be >= 1, got {self.instances}")
        if self.kind not in INSTANCE_KINDS:
            raise InputError(f"--triton-device must be one of {', '.join(INSTANCE_KINDS)}, got {self.kind!r}")
        if self.version < 1 or self.num_versions < 1:
            raise InputError("model versions start at 1 (Triton ignores version folder 0)")

    def preferred(self) -> list[int]:
        if self.preferred_batch_sizes:
            return sorted({int(b) for b in self.preferred_batch_sizes if 1 <= int(b) <= self.max_batch_size})
        sizes, b = [], 2
        while b <= self.max_batch_size:
            sizes.append(b)
            b *= 2
        return sizes or [1]


def _dims(values) -> str:
    return "[ " + ", ".join(str(int(v)) for v in values) + " ]"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def model_config_text(platform: str, imgsz: tuple[int, int], num_classes: int, options: TritonRepoOptions,
                      class_names: list[str] | None = None, name: str | None = None,
                      label_file: str | None = None) -> str:
    """config.pbtxt (protobuf text format of Triton's ``ModelConfig``) for the fixed-size pipeline.

    Args:
        platform: "onnxruntime_onnx" or "tensorrt_plan".
        imgsz: (H, W) of the frames; num_classes: K.
    Returns:
        the file's text (tests parse it with ``tritonclient.grpc.model_config_pb2``).
    """
    h, w = imgsz
    kind = INSTANCE_KINDS[options.kind]
    gpus = f"\n    gpus: {_dims(options.gpus)}" if options.gpus and kind == "KIND_GPU" else ""
    label = f"\n    label_filename: {_quote(label_file)}" if label_file else ""
    lines = [
        f"name: {_quote(name or options.model_name)}",
        f"platform: {_quote(platform)}",
        f"max_batch_size: {int(options.max_batch_size)}",
        "input [",
        "  {",
        '    name: "frame"',
        "    data_type: TYPE_UINT8",
        f"    dims: {_dims((h, w, 3))}",
        "  }",
        "]",
        "output [",
        "  {",
        '    name: "labels"',
        "    data_type: TYPE_INT64",
        f"    dims: {_dims((h, w))}",
        "  },",
        "  {",
        '    name: "probs"',
        "    data_type: TYPE_FP32",
        f"    dims: {_dims((num_classes, h, w))}{label}",
        "  }",
        "]",
        "dynamic_batching {",
        f"  preferred_batch_size: {_dims(options.preferred())}",
        f"  max_queue_delay_microseconds: {int(options.max_queue_delay_us)}",
        "}",
        "instance_group [",
        "  {",
        f"    count: {int(options.instances)}",
        f"    kind: {kind}{gpus}",
        "  }",
        "]",
        f"version_policy: {{ latest: {{ num_versions: {int(options.num_versions)} }} }}",
    ]
    if options.warmup:
        lines.append("model_warmup [")
        sizes = sorted({1, int(options.max_batch_size)})
        for i, b in enumerate(sizes):
            lines += [
                "  {",
                f'    name: "zero_frames_batch_{b}"',
                f"    batch_size: {b}",
                "    inputs {",
                '      key: "frame"',
                "      value: {",
                "        data_type: TYPE_UINT8",
                f"        dims: {_dims((h, w, 3))}",
                "        zero_data: true",
                "      }",
                "    }",
                "  }" + ("," if i < len(sizes) - 1 else ""),
            ]
        lines.append("]")
    if class_names:
        lines += [
            "parameters {",
            '  key: "radseg_classes"',
            f"  value: {{ string_value: {_quote(','.join(class_names))} }}",
            "}",
        ]
    return "\n".join(lines) + "\n"


def export_batched_pipeline(radseg, vocab_embeddings, imgsz: tuple[int, int], path: str | os.PathLike,
                            max_batch: int, opset: int | None = None) -> Path:
    """ONNX of the fixed-size pipeline with a dynamic batch of 1..max_batch frames (B x H x W x 3 uint8)."""
    from radseg_edge.export.fixed import FixedResolutionPipeline, batch_dynamic_shapes
    from radseg_edge.export.onnx import export_module

    module = FixedResolutionPipeline(radseg, vocab_embeddings, *imgsz)
    return export_module(module, (module.example_input(2),), path, ["frame"], ["labels", "probs"],
                         dynamic_shapes=batch_dynamic_shapes(max_batch), opset=opset)


def _engine_possible() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def _write_engine(onnx_path: Path, plan_dir: Path, imgsz: tuple[int, int], max_batch: int,
                  workspace_mib: int, progress: bool) -> dict:
    """Build the TensorRT plan of the batched pipeline for THIS GPU (fp32; never run on the CPU-only
    development machine). Returns the engine key as a dict."""
    from radseg_edge.export.cache import EngineKey, describe_device, write_key
    from radseg_edge.export.engine import build_engine, plan_build

    trt = require("tensorrt", "trt", "the tensorrt_plan model")
    h, w = imgsz
    opt = max(1, min(4, max_batch))
    profile = {"frame": ((1, h, w, 3), (opt, h, w, 3), (max_batch, h, w, 3))}
    plan = plan_build(trt.__version__, "fp32", "fp32", workspace_mib)
    engine = plan_dir / "model.plan"
    engine.write_bytes(build_engine(onnx_path, plan, profile, progress=progress))
    key = EngineKey.create(describe_device(), "fp32", onnx_path, profile)
    write_key(engine, key)
    return key.as_dict()


def write_triton_repository(radseg, vocabulary, imgsz: tuple[int, int], out_dir: str | os.PathLike,
                            options: TritonRepoOptions | None = None, export_options=None,
                            model_info: dict | None = None, engine: str = "auto") -> Manifest:
    """Write a Triton model repository (see the module docstring); returns the model's manifest.

    Args:
        radseg: a :class:`radseg_edge.pipeline.RADSeg` (CPU is used for the export).
        vocabulary: a :class:`radseg_edge.models.text.Vocabulary` (built into the graph).
        imgsz: (H, W) of the camera frames.
        export_options: :class:`radseg_edge.export.build.ExportOptions` (gate images, thresholds, opset, force).
        engine: "auto" (a tensorrt_plan model when TensorRT and a GPU are here), "never" or "always".
    Raises:
        InputError: no vocabulary or bad options; EngineError: the accuracy gate fails (unless force).
    """
    from radseg_edge.export.build import ExportOptions, artefact_record, check_export

    opts = options or TritonRepoOptions()
    opts.check()
    if vocabulary is None:
        raise InputError("--format triton builds the classes into the model: give --vocab FILE (`radseg-edge vocab build`)")
    eopts = export_options or ExportOptions()
    eopts.imgsz = tuple(imgsz)
    repo = Path(out_dir)
    model_dir = repo / opts.model_name
    version_dir = model_dir / str(opts.version)
    version_dir.mkdir(parents=True, exist_ok=True)
    radio = radseg.radio
    device = radseg.device
    with tempfile.TemporaryDirectory() as tmp:
        src = export_batched_pipeline(radseg.to("cpu"), vocabulary.embeddings, imgsz, Path(tmp) / "model.onnx",
                                      opts.max_batch_size, eopts.opset)
        onnx_path = version_dir / "model.onnx"
        shutil.move(str(src), onnx_path)
    radseg.to(device)
    (model_dir / "labels.txt").write_text("\n".join(vocabulary.names) + "\n")
    manifest = Manifest(
        format="onnx", precision="fp32",
        model={"name": radio.config.name, "embed_dim": radio.embed_dim, "depth": len(radio.blocks),
               "patch_size": radio.patch_size, "language_adaptor": radio.language_adaptor, **(model_info or {})},
        vocabulary={"dim": radseg.embedding_dim, "num_classes": len(vocabulary),
                    "text_model": getattr(vocabulary, "text_model", None)},
        windows={"crop": radseg.crop, "stride": radseg.stride, "patch": radio.patch_size, "scra_tau": radseg.scra_tau,
                 "scga_tau": radseg.scga_tau, "denoise": radseg.denoise, "prediction_thresh": radseg.prediction_thresh},
        notes=eopts.notes,
    )
    manifest.artefacts["vocabulary"] = artefact_record(vocabulary.save(model_dir / "vocabulary.safetensors"),
                                                       names=list(vocabulary.names))
    manifest.artefacts["pipeline"] = {
        **artefact_record(onnx_path), "file": f"{opts.version}/model.onnx", "kind": "fp32", "imgsz": list(imgsz),
        "max_batch": int(opts.max_batch_size), "triton": {"model": opts.model_name, "platform": "onnxruntime_onnx"},
    }
    manifest.write(model_dir)
    (model_dir / "config.pbtxt").write_text(model_config_text(
        "onnxruntime_onnx", imgsz, len(vocabulary), opts, list(vocabulary.names), label_file="labels.txt"))
    # the accuracy gate: this graph in ONNX Runtime (one frame at a time) against the PyTorch pipeline
    manifest.gate = check_export(radseg, model_dir, vocabulary, eopts)
    if engine == "always" or (engine == "auto" and _engine_possible()):
        trt_name = f"{opts.model_name}_trt"
        trt_dir = repo / trt_name
        plan_dir = trt_dir / str(opts.version)
        plan_dir.mkdir(parents=True, exist_ok=True)
        key = _write_engine(onnx_path, plan_dir, imgsz, opts.max_batch_size, eopts.workspace_mib, eopts.progress)
        gpu_opts = TritonRepoOptions(**{**opts.__dict__, "kind": "gpu"})
        (trt_dir / "config.pbtxt").write_text(model_config_text(
            "tensorrt_plan", imgsz, len(vocabulary), gpu_opts, list(vocabulary.names), name=trt_name))
        trt_manifest = Manifest(**{**manifest.__dict__, "artefacts": {}, "notes": list(manifest.notes)})
        trt_manifest.format, trt_manifest.precision = "engine-fp32", "fp32"
        trt_manifest.artefacts["vocabulary"] = artefact_record(vocabulary.save(trt_dir / "vocabulary.safetensors"),
                                                               names=list(vocabulary.names))
        trt_manifest.artefacts["pipeline_engine"] = {
            **artefact_record(plan_dir / "model.plan"), "file": f"{opts.version}/model.plan", "precision": "fp32",
            "imgsz": list(imgsz), "max_batch": int(opts.max_batch_size), "engine_key": key,
            "gate_of_onnx": "the accuracy gate figures are those of the ONNX graph the plan was built from",
        }
        trt_manifest.write(trt_dir)
        manifest.notes.append(f"{trt_name}: TensorRT plan for this GPU ({key.get('gpu', '?')}); "
                              "rebuild with `radseg-edge export --format triton` on each serving GPU model")
    elif engine == "auto":
        manifest.notes.append("no tensorrt_plan model: TensorRT and a CUDA GPU are needed where the export runs "
                              "(export on the serving GPU, or let Triton run the onnxruntime_onnx model)")
    manifest.write(model_dir)
    return manifest
