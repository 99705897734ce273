"""3D open-vocabulary mapping: fuse RADSeg features or probabilities from posed RGB-D frames into a sparse
voxel map, query it by text (docs/mapping.md).

    from radseg_edge.mapping import Mapper, VoxelMap, open_sequence
"""

from radseg_edge.mapping.mapper import Mapper
from radseg_edge.mapping.pca import FeaturePCA
from radseg_edge.mapping.readers import LAYOUTS, Frame, open_sequence
from radseg_edge.mapping.voxel_map import VoxelMap

__all__ = ["LAYOUTS", "FeaturePCA", "Frame", "Mapper", "VoxelMap", "open_sequence"]
