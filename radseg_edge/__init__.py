"""radseg-edge: RADSeg open-vocabulary semantic segmentation for the edge."""

__version__ = "0.1.0"
