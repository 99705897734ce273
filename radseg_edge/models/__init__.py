"""Models: the RADIO backbone and its adaptor heads, text vocabularies, and (RADSeg+) SAM parts."""

from radseg_edge.models.configs import CONFIGS, RadioConfig, TeacherSpec, get_config
from radseg_edge.models.factory import load_radio, radio_from_config
from radseg_edge.models.radio import RadioModel, RadioOutput

__all__ = ["CONFIGS", "RadioConfig", "RadioModel", "RadioOutput", "TeacherSpec", "get_config", "load_radio", "radio_from_config"]
