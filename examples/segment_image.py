"""Segment one image with a vocabulary file and save an overlay.

    python examples/segment_image.py c-radio_v3-b_half.pth.tar street.safetensors photo.jpg overlay.png
"""

import sys

from radseg_edge import RADSeg, Vocabulary, load_radio
from radseg_edge.runtime.image_io import load_image, save_rgb
from radseg_edge.runtime.overlay import overlay

checkpoint, vocab_file, image_file, out_file = sys.argv[1:5]
vocab = Vocabulary.load(vocab_file)
seg = RADSeg(load_radio(checkpoint), vocabulary=vocab)
image, _ = load_image(image_file)
result = seg(image)
save_rgb(out_file, overlay(image, result.labels_numpy(), vocab.names))
print(f"{out_file}: classes present: {sorted({vocab.names[k] for k in result.labels.unique().tolist() if k >= 0})}")
