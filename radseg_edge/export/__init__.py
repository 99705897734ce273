"""Export of RADSeg for edge runtimes (docs/export.md).

- :mod:`~radseg_edge.export.ops`: exportable operator variants, tested against :mod:`radseg_edge.core`;
- :mod:`~radseg_edge.export.graphs` / :mod:`~radseg_edge.export.fixed`: the traceable modules (window
  backbone, head, and ``FixedResolutionPipeline`` for one frame size);
- :mod:`~radseg_edge.export.onnx`, :mod:`~radseg_edge.export.fp16`, :mod:`~radseg_edge.export.quantize`:
  ONNX graphs, FP16 conversion, INT8 Q/DQ;
- :mod:`~radseg_edge.export.engine`, :mod:`~radseg_edge.export.cache`: TensorRT builds and engine keys;
- :mod:`~radseg_edge.export.gate`, :mod:`~radseg_edge.export.manifest`: accuracy gate and manifest.json;
- :mod:`~radseg_edge.export.build`: ``export_model`` (the ``radseg-edge export`` command).

Heavy dependencies (onnx, onnxruntime, modelopt, tensorrt, torch_tensorrt) are imported inside functions.
"""
