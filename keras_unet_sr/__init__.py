"""keras-unet-sr: U-Net super-resolution for fluorescence microscopy.

Public API: the model (`SuperResolutionUNet`), its loss (`SSIML1Loss`) and
metrics (`PSNR`, `SSIM`), CARE-style evaluation (`evaluate_prediction`), the
one normalization (`percentile_normalize`) and tiler (`tiled_predict`).
Subpackages: `keras_unet_sr.datasets` (TFDS builder), `keras_unet_sr.tuning`
(keras-tuner), `keras_unet_sr.export` (TF-Serving bundles and gRPC).
"""

__version__ = "0.1.0"

from keras_unet_sr.evaluation import evaluate_prediction
from keras_unet_sr.layers import InterpolatedFrameMean, PixelShuffle
from keras_unet_sr.losses import SSIML1Loss
from keras_unet_sr.metrics import PSNR, SSIM
from keras_unet_sr.normalization import denormalize, normalize, percentile_normalize
from keras_unet_sr.tiling import TilingPlan, plan_for_model, plan_tiling, tiled_predict
from keras_unet_sr.unet import SuperResolutionUNet

__all__ = [
    "PSNR",
    "SSIM",
    "InterpolatedFrameMean",
    "PixelShuffle",
    "SSIML1Loss",
    "SuperResolutionUNet",
    "TilingPlan",
    "denormalize",
    "evaluate_prediction",
    "normalize",
    "percentile_normalize",
    "plan_for_model",
    "plan_tiling",
    "tiled_predict",
]
