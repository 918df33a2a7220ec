"""adaconv: fast, structure-aware arbitrary style transfer (AdaConv, CVPR 2021; AdaIN, ICCV 2017).

The models and the Stylizer are imported on first use (PEP 562), not with the package: the ``adaconv`` command
restarts itself under tcmalloc (allocator.py) before PyTorch is loaded, so that the restart costs a fraction of a
second rather than a second import of torch.
"""

import importlib

from .errors import AdaconvError, ImageError, WeightsError

_LAZY = {"Stylizer": ".inference", "EncodedContent": ".inference", "AdaConvModel": ".models",
         "AdaINModel": ".models", "StyleCode": ".models", "blend_style_codes": ".models", "build_model": ".models"}

__all__ = ["AdaConvModel", "AdaINModel", "AdaconvError", "EncodedContent", "ImageError", "StyleCode", "Stylizer",
           "WeightsError", "blend_style_codes", "build_model"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
