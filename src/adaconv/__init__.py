"""adaconv: fast, structure-aware arbitrary style transfer (AdaConv, CVPR 2021; AdaIN, ICCV 2017)."""

from .errors import AdaconvError, ImageError, WeightsError
from .inference import Stylizer
from .models import AdaConvModel, AdaINModel, StyleCode, blend_style_codes, build_model

__all__ = ["AdaConvModel", "AdaINModel", "AdaconvError", "ImageError", "StyleCode", "Stylizer", "WeightsError",
           "blend_style_codes", "build_model"]
__version__ = "0.1.0"
