"""The super-resolution U-Net: a Keras functional model with a complete config."""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras

from keras_unet_sr.config import TEST_TIME_TRANSFORMS
from keras_unet_sr.config import field as config_field
from keras_unet_sr.model.layers import (
    PACKAGE,
    InterpolatedFrameMean,
    InterpolatedFrames,
    PixelShuffle,
)


def receptive_field_radius(
    depth: int,
    kernel_size: int,
    convs_per_level: int,
    scale: int,
    fine_convs: int = 1,
    upsampling: str = "subpixel",
    fine_frames: bool = False,
) -> float:
    """Radius, in input pixels, of the region one output pixel depends on.

    Walks the deepest path of the U-Net: the encoder convolutions and pools,
    the bottleneck, the decoder's upsampling and convolutions, and the
    sub-pixel head (or, for `upsampling="input"`, the same U-Net on the
    output grid after a bicubic interpolation, whose kernel reaches 2 input
    pixels). Pools and stride-2 upsamplings are counted with their
    worst-case half-pixel misalignment, so the value is an upper bound.
    """
    if upsampling == "input" and scale > 1:
        fine = receptive_field_radius(depth, kernel_size, convs_per_level, 1)
        return fine / scale + 2
    half = (kernel_size - 1) / 2
    radius = 0.0
    for level in range(depth):  # encoder: convs, then a 2x2 pool
        radius += convs_per_level * half * 2**level + 2**level
    radius += convs_per_level * half * 2**depth  # bottleneck
    for level in reversed(range(depth)):  # decoder: 2x2 up, then convs
        radius += 2**level + convs_per_level * half * 2**level
    if scale > 1:  # head conv before the pixel shuffle, the fine convs after it
        fine = fine_convs * half / scale
        # A shuffled pixel sits up to (s - 1) / 2s input pixels off its source.
        radius += half + (scale - 1) / (2 * scale) + fine
        if fine_frames:  # the interpolated frames' path (bicubic: 2 pixels)
            radius = max(radius, 2 + fine)
    return radius


@keras.saving.register_keras_serializable(package=PACKAGE)
class SuperResolutionUNet(keras.Model):
    """U-Net mapping low-resolution frames to a super-resolved image.

    A functional model (`keras.Model` built from `keras.Input`), so it
    summarizes, plots, exports and loads like any functional model, while
    `get_config()` returns the builder arguments, as keras-hub backbones do.

    Input `image`: `(batch, H, W, frames)` float, already intensity-normalized
    (see `keras_unet_sr.data.normalization`). `H` and `W` must be multiples of
    `2**depth` (the pooling factor, `size_multiple`); any such size works, and
    `keras_unet_sr.inference.tiling` handles every other size. Output: `(batch,
    scale*H, scale*W, out_channels)` float32 in the same normalized units.

    The upsampling is inside the network (a sub-pixel convolution, or an
    interpolation of the frames before a U-Net on the output grid). With
    `residual`, the output is added to the interpolated mean of the input
    frames, so an untrained network (zero-initialized last layer) returns the
    trivial answer and training learns the correction.

    Args:
        frames: Input channels: 1 for confocal/widefield, 3/9/15 raw SIM frames.
        out_channels: Output channels (1 for a super-resolved image).
        scale: Upsampling factor between input and output grids (1, 2 or 4).
        depth: Number of 2x poolings in the encoder.
        filters: Filters of the first level; doubled at each level.
        kernel_size: Convolution kernel size (odd).
        convs_per_level: Convolutions in each encoder/decoder block.
        upsampling: Where the grid gets finer when `scale > 1`:
            `"subpixel"` runs the U-Net on the input grid and ends with a
            sub-pixel convolution (cheap); `"input"` interpolates the frames
            (with `residual_interpolation`) and runs the U-Net on the output
            grid, as CARE does (`scale**2` times the compute).
        fine_convs: Convolutions at the output resolution, after the
            sub-pixel upsampling (scale > 1 and `"subpixel"` only).
        fine_frames: Give those convolutions the raw frames interpolated
            to the output grid (with `residual_interpolation`) next to the
            sub-pixel features: the U-Net's features say what to do, the
            frames carry their own detail at full resolution (scale > 1 and
            `"subpixel"` only). Models saved before it existed load without.
        normalization: `"none"`, `"batch"` or `"layer"` (per pixel over
            channels). Group/instance norms are not offered: their spatial
            statistics differ between a tile and the whole image.
        dropout: Spatial dropout rate in the bottleneck.
        activation: Activation of the convolution blocks.
        residual: Add the interpolated frame mean to the output, with a
            zero-initialized head, so that an untrained model returns that
            mean and training learns the correction. Off by default: on
            the synthetic SIM, confocal and widefield data it scored
            0.5-1.0 dB below the direct output, on the real DL-SIM fields
            0.2 dB above it (README, Quality).
        residual_interpolation: Interpolation of that residual path and of
            `fine_frames`.
        percentiles: Low/high intensity percentiles that the input is
            normalized with before the network sees it; stored with the
            model so prediction and serving normalize as training did.
        frame_subset: Which frames of a longer raw stack the model reads
            (e.g. `(0, 5, 10)` for SIM3 out of 15 frames); `None` when it
            reads all `frames`. Stored so prediction and serving accept the
            full stack the microscope writes.
        test_time_transforms: What whole-image prediction averages each
            tile's output over (`inference.transforms.TRANSFORMS`: `"none"`,
            `"half-turn"`, `"turns"`, `"dihedral"`); not part of the network
            (training and `model(x)` never average). Stored so prediction,
            serving and the Model Zoo package predict alike. Models saved
            before it existed load with `"none"`, as they predicted then.
        dtype: Dtype policy for the layers (e.g. `"mixed_float16"`); the
            output layer always computes in float32.
        name: Model name.
    """

    def __init__(
        self,
        frames: int = 1,
        out_channels: int = 1,
        scale: int = 1,
        depth: int = 2,
        filters: int = 32,
        kernel_size: int = 3,
        convs_per_level: int = 2,
        upsampling: str = "subpixel",
        fine_convs: int = 1,
        fine_frames: bool = True,
        normalization: str = "none",
        dropout: float = 0.0,
        activation: str = "relu",
        residual: bool = False,
        residual_interpolation: str = "bicubic",
        percentiles: Sequence[float] = (1.0, 99.8),
        frame_subset: Sequence[int] | None = None,
        test_time_transforms: str = "none",
        dtype=None,
        name: str = "super_resolution_unet",
        **kwargs,
    ):
        _check_arguments(
            out_channels,
            frames=frames,
            scale=scale,
            depth=depth,
            filters=filters,
            kernel_size=kernel_size,
            convs_per_level=convs_per_level,
            upsampling=upsampling,
            fine_convs=fine_convs,
            fine_frames=fine_frames,
            normalization=normalization,
            dropout=dropout,
            residual_interpolation=residual_interpolation,
            percentiles=percentiles,
        )
        if test_time_transforms not in TEST_TIME_TRANSFORMS:
            raise ValueError(
                f"test_time_transforms must be one of "
                f"{', '.join(TEST_TIME_TRANSFORMS)}, got {test_time_transforms!r}"
            )
        # Resolve the policy now: the functional base class does not keep it.
        dtype = (
            keras.config.dtype_policy()
            if dtype is None
            else keras.dtype_policies.get(dtype)
        )

        def block(x, units, prefix):
            for i in range(convs_per_level):
                x = keras.layers.Conv2D(
                    units,
                    kernel_size,
                    padding="same",
                    use_bias=normalization != "batch",
                    kernel_initializer="he_normal",
                    dtype=dtype,
                    name=f"{prefix}_conv{i}",
                )(x)
                if normalization == "batch":
                    x = keras.layers.BatchNormalization(
                        dtype=dtype, name=f"{prefix}_bn{i}"
                    )(x)
                elif normalization == "layer":
                    x = keras.layers.LayerNormalization(
                        axis=-1, dtype=dtype, name=f"{prefix}_ln{i}"
                    )(x)
                x = keras.layers.Activation(
                    activation, dtype=dtype, name=f"{prefix}_act{i}"
                )(x)
            return x

        # === Functional model ===
        image = keras.Input(shape=(None, None, frames), name="image")
        x = image
        on_output_grid = upsampling == "input" and scale > 1
        if on_output_grid:  # CARE's way: the whole U-Net on the output grid
            x = InterpolatedFrames(
                scale, residual_interpolation, dtype="float32", name="upsampled"
            )(x)
        skips = []
        for level in range(depth):
            x = block(x, filters * 2**level, f"down{level}")
            skips.append(x)
            x = keras.layers.MaxPooling2D(2, dtype=dtype, name=f"pool{level}")(x)
        x = block(x, filters * 2**depth, "bottleneck")
        if dropout > 0:
            x = keras.layers.SpatialDropout2D(
                dropout, dtype=dtype, name="bottleneck_dropout"
            )(x)
        for level in reversed(range(depth)):
            x = keras.layers.Conv2DTranspose(
                filters * 2**level, 2, strides=2, dtype=dtype, name=f"up{level}"
            )(x)
            x = keras.layers.Concatenate(dtype=dtype, name=f"skip{level}")(
                [x, skips[level]]
            )
            x = block(x, filters * 2**level, f"decode{level}")
        if scale > 1 and not on_output_grid:
            x = keras.layers.Conv2D(
                filters * scale * scale,
                kernel_size,
                padding="same",
                dtype=dtype,
                name="subpixel_conv",
            )(x)
            x = PixelShuffle(scale, dtype=dtype, name="pixel_shuffle")(x)
            if fine_frames:
                fine = InterpolatedFrames(
                    scale, residual_interpolation, dtype="float32", name="fine_frames"
                )(image)
                x = keras.layers.Concatenate(dtype=dtype, name="fine_skip")([x, fine])
            for i in range(fine_convs):  # the first keeps its 0.1.0 name
                x = keras.layers.Conv2D(
                    filters,
                    kernel_size,
                    padding="same",
                    activation=activation,
                    dtype=dtype,
                    name="fine_conv" if i == 0 else f"fine_conv{i}",
                )(x)
        # Zero-initialized head: an untrained model returns the residual path.
        x = keras.layers.Conv2D(
            out_channels,
            1,
            kernel_initializer="zeros" if residual else "glorot_uniform",
            dtype="float32",
            name="head",
        )(x)
        if residual:
            base = InterpolatedFrameMean(
                scale,
                residual_interpolation,
                out_channels,
                dtype="float32",
                name="interpolated_mean",
            )(image)
            x = keras.layers.Add(dtype="float32", name="sr_image")([x, base])
        super().__init__(inputs=image, outputs=x, name=name, **kwargs)
        self._layer_dtype_policy = dtype

        # === Config ===
        self.frames = int(frames)
        self.out_channels = int(out_channels)
        self.scale = int(scale)
        self.depth = int(depth)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.convs_per_level = int(convs_per_level)
        self.upsampling = upsampling
        self.fine_convs = int(fine_convs)
        self.fine_frames = bool(fine_frames)
        self.normalization = normalization
        self.dropout = float(dropout)
        self.activation = activation
        self.residual = bool(residual)
        self.residual_interpolation = residual_interpolation
        self.percentiles = tuple(float(p) for p in percentiles)
        self.frame_subset = (
            None if frame_subset is None else tuple(int(f) for f in frame_subset)
        )
        self.test_time_transforms = test_time_transforms

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (`2**depth`)."""
        return 2**self.depth

    @property
    def halo(self) -> int:
        """Input pixels of context an output pixel depends on, rounded up.

        A tiler whose tiles keep at least this margin around the pixels it
        keeps reproduces the whole-image prediction there.
        """
        return math.ceil(
            receptive_field_radius(
                self.depth,
                self.kernel_size,
                self.convs_per_level,
                self.scale,
                self.fine_convs,
                self.upsampling,
                self.fine_frames,
            )
        )

    def get_config(self):
        # Not super().get_config(): that would return the functional graph.
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self._layer_dtype_policy),
            "frames": self.frames,
            "out_channels": self.out_channels,
            "scale": self.scale,
            "depth": self.depth,
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "convs_per_level": self.convs_per_level,
            "upsampling": self.upsampling,
            "fine_convs": self.fine_convs,
            "fine_frames": self.fine_frames,
            "normalization": self.normalization,
            "dropout": self.dropout,
            "activation": self.activation,
            "residual": self.residual,
            "residual_interpolation": self.residual_interpolation,
            "percentiles": list(self.percentiles),
            "frame_subset": None
            if self.frame_subset is None
            else list(self.frame_subset),
            "test_time_transforms": self.test_time_transforms,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        # Configs saved before `fine_frames` existed describe models without it.
        config.setdefault("fine_frames", False)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(**config)


def _check_arguments(out_channels: int, **arguments) -> None:
    """Fail early with the argument's name instead of deep in Keras, by the
    same rules as the config (`keras_unet_sr.config.ModelConfig`)."""
    if not (isinstance(out_channels, int) and out_channels >= 1):
        raise ValueError(f"out_channels must be >= 1, got {out_channels!r}")
    for name, value in arguments.items():
        field = config_field(f"model.{name}")
        raw = list(value) if isinstance(value, (tuple, list)) else value
        try:
            if raw is None or field.check(raw) is None:
                raise ValueError(f"None is not allowed ({field.spec.rule})")
        except ValueError as error:
            raise ValueError(f"{name} {error}") from None
