"""Stream a camera (or a video) through RADSeg to a browser, printing the per-stage profile at the end.

    python examples/stream_camera.py c-radio_v3-b_half.pth.tar street.safetensors csi://0
    python examples/stream_camera.py tests/fixtures/tiny_radio.pth.tar vocab.safetensors video.mp4
Open http://127.0.0.1:8080/ to watch; Ctrl-C stops.
"""

import sys

from radseg_edge import Vocabulary
from radseg_edge.runtime.pipeline import StreamConfig, StreamPipeline
from radseg_edge.runtime.report import format_summary
from radseg_edge.runtime.segmenter import make_segmenter
from radseg_edge.runtime.sinks import open_sink
from radseg_edge.runtime.sources import open_source

checkpoint, vocab_file, source = sys.argv[1:4]
seg = make_segmenter("auto", checkpoint, Vocabulary.load(vocab_file))
pipeline = StreamPipeline(open_source(source), seg, [open_sink("http://127.0.0.1:8080")], StreamConfig(max_frames=300))
print(format_summary(pipeline.run()))
