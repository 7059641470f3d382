"""Every option of training and export, with its default and its choices, written once.

The command line binds to these (``python -m training --help`` reads its defaults and choices
from here, the way TF Serving's flags bind to its Options struct), and so do the functions
behind it. No TensorFlow here: building the parser stays fast.

    config = TrainConfig(data="VOCdevkit/VOC2012", out="runs/voc")  # the book's run
    options = ExportOptions(precision="float16")
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from client import contract
from client.palette import voc_colormap
from training.data import voc
from training.data.labelmap import Labelmap, class_names
from training.data.layouts import open_layout

BACKBONES = ("resnet50", "mobilenetv2")
OUTPUT_STRIDES = (8, 16)
PLAIN_SCALES = (1.0,)
"""Evaluation's default ``--scales``: the network once, at the size it was trained for."""
LOSSES = ("ce", "ce+dice", "dice")
CLASS_WEIGHTINGS = ("per_image", "fixed", "none")
OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("plateau", "poly")
"""``plateau``: a constant rate that ReduceLROnPlateau cuts (the book's); ``poly``: linear
warm-up, then ``lr × (1 − step/steps)^power`` down to 0 over the whole run (DeepLab's)."""
AUGMENTATIONS = ("crop_or_resize", "random_scale")
"""``crop_or_resize``: the book's (resize-and-crop or resize, flip, colour jitter);
``random_scale``: DeepLab's (scale by a factor in ``scale_range``, pad, crop, flip)."""
RESIZE_MODES = ("aspect", "stretch")
"""How a frame becomes the network's input: ``aspect`` keeps its aspect ratio (long side = the
training size), ``stretch`` resizes it to the training size as the book does."""
DEFAULT_RESIZE = "aspect"
PRECISION_POLICIES = {
    "float32": "float32",
    "float16": "mixed_float16",
    "bfloat16": "mixed_bfloat16",
}
"""``--precision`` → the Keras dtype policy the model computes in (weights stay float32)."""
PRECISIONS = tuple(PRECISION_POLICIES)
DEFAULT_PRECISION = "float32"
DEFAULT_MIN_AGREEMENT = 0.999
"""Share of class-map pixels an export must compute as the model as trained does."""
TFLITE_OPTIMIZATIONS = ("none", "float16", "int8")
DEFAULT_MIN_INT8_AGREEMENT = 0.97
"""Share of class-map pixels an int8 model must compute as the float32 model does."""


def _choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")


@dataclass
class TrainConfig:
    """Every option of a training run; the defaults are the book's (preset ``book``)."""

    data: str
    out: str
    epochs: int = 25
    batch_size: int = 8
    input_size: tuple[int, int] = (384, 384)
    lr: float = 1e-4
    backbone: str = "resnet50"
    backbone_weights: str | None = "imagenet"
    output_stride: int = 16
    num_classes: int | None = None  # None: the dataset's (labelmap.txt, or VOC's 21)
    loss: str = "ce+dice"
    class_weights: str = "per_image"
    train_split: str = "train"
    val_split: str = "val"
    seed: int = 0
    split_seed: int = voc.DEFAULT_SPLIT_SEED
    # A root with one list (CVAT's default.txt) is split into train / val / test by these.
    val_fraction: float = voc.DEFAULT_VAL_FRACTION
    test_fraction: float = voc.DEFAULT_TEST_FRACTION
    steps_per_epoch: int | None = None
    bn_momentum: float | None = None
    mixed_precision: bool = False
    decoder: bool = False  # DeepLab v3+'s decoder (stride-4 features) before the classifier
    sync_batch_norm: bool = False  # batch statistics over all replicas (MirroredStrategy)
    early_stopping_patience: int | None = 6  # None: no early stopping
    reduce_lr_patience: int = 3
    optimizer: str = "adam"
    momentum: float = 0.9  # SGD's
    weight_decay: float | None = None
    """Keras' decoupled weight decay (``w -= lr × weight_decay × w`` each step, outside the
    momentum; batch-norm parameters and biases excluded); None: none."""
    lr_schedule: str = "plateau"
    lr_power: float = 0.9  # the poly schedule's exponent
    warmup_steps: int = 0  # the poly schedule's linear warm-up from 0 to lr
    augmentation: str = "crop_or_resize"
    scale_range: tuple[float, float] = (0.5, 2.0)
    """random_scale: the factors drawn, relative to the frame fitted into input_size."""
    class_names: list[str] = field(default_factory=list)  # [] : the dataset's
    palette: list[list[int]] = field(default_factory=list)  # RGB per class; [] : the dataset's
    fixed_class_weights: list[float] | None = None  # filled in when class_weights="fixed"

    def __post_init__(self):
        self.input_size = tuple(self.input_size)
        self.scale_range = tuple(self.scale_range)
        self._resolve_classes()
        for name in ("epochs", "batch_size", "num_classes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be at least 1, got {self.steps_per_epoch}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if len(self.input_size) != 2 or min(self.input_size) < 32:
            raise ValueError(f"input_size must be (height, width) ≥ 32, got {self.input_size}")
        _choice("backbone", self.backbone, BACKBONES)
        _choice("output_stride", self.output_stride, OUTPUT_STRIDES)
        _choice("loss", self.loss, LOSSES)
        _choice("class_weights", self.class_weights, CLASS_WEIGHTINGS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _choice("augmentation", self.augmentation, AUGMENTATIONS)
        self._check_recipe()

    def _check_recipe(self) -> None:
        """The optimizer's, schedule's and augmentation's numbers, each named when out of range."""
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay is not None and not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be ≥ 0 or None, got {self.weight_decay}")
        if not self.lr_power > 0:
            raise ValueError(f"lr_power must be positive, got {self.lr_power}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be ≥ 0, got {self.warmup_steps}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 0:
            raise ValueError(
                f"early_stopping_patience must be ≥ 0 or None, got {self.early_stopping_patience}"
            )
        low, high = self.scale_range if len(self.scale_range) == 2 else (0, 0)
        if not 0 < low <= high:
            raise ValueError(
                f"scale_range must be (low, high) with 0 < low ≤ high, got {self.scale_range}"
            )
        for name in ("decoder", "sync_batch_norm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")

    def _resolve_classes(self) -> None:
        """Class count, names and colours: as recorded (a saved run), else the dataset's
        labelmap.txt or Cityscapes' table, else VOC's (numbered names past VOC's 21 for a
        larger --num-classes)."""
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {self.num_classes}")
        if self.class_names:
            self.num_classes = self.num_classes or len(self.class_names)
        else:
            labelmap, self.num_classes = open_layout(self.data).classes(self.num_classes)
            self.class_names = class_names(labelmap.names, self.num_classes)
            if labelmap != Labelmap.voc():
                self.palette = [list(color) for color in labelmap.colors]
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"num_classes is {self.num_classes} but {len(self.class_names)} class names "
                "are given"
            )
        if not self.palette:
            self.palette = voc_colormap()[: self.num_classes].tolist()
        self.palette = [list(map(int, color)) for color in self.palette]
        if len(self.palette) != self.num_classes:
            raise ValueError(
                f"num_classes is {self.num_classes} but {len(self.palette)} colours are given"
            )

    def classes(self) -> Labelmap:
        """The run's classes (names and colours in id order) as a labelmap."""
        return Labelmap(tuple(self.class_names), tuple(map(tuple, self.palette)))

    def split(self, name: str) -> list[str]:
        """The ids of split ``name`` of the run's data, through its layout
        (:func:`training.data.layouts.open_layout`: VOC's lists, SBD's ``train_aug``,
        Cityscapes' folders)."""
        return open_layout(self.data).resolve_split(
            name, **self.split_options(), seed=self.split_seed
        )

    def split_options(self) -> dict[str, float]:
        return dict(val_fraction=self.val_fraction, test_fraction=self.test_fraction)

    @property
    def resize_before_crop(self) -> tuple[int, int]:
        """The book resizes to 444 before cropping 384: the same ratio at any input size."""
        return tuple(round(side * 444 / 384) for side in self.input_size)

    def differences(self, other: TrainConfig, *, ignore: tuple[str, ...] = ()) -> list[str]:
        """``"name: this → other"`` for every option that differs (used before resuming)."""
        return [
            f"{f.name}: {getattr(self, f.name)!r} → {getattr(other, f.name)!r}"
            for f in fields(self)
            if f.name not in ignore and getattr(self, f.name) != getattr(other, f.name)
        ]


@dataclass(frozen=True)
class InferenceOptimizations:
    """Which rewrites export applies to the served model (each has a ``--no-…`` flag; all on
    by default): atrous convolutions on Conv2D's own dilations, batch norms folded into the
    convolutions before them (:mod:`training.export.rewrites`)."""

    native_dilation: bool = True
    fold_batch_norms: bool = True

    def to_json(self) -> dict[str, bool]:
        return asdict(self)


@dataclass(frozen=True)
class ExportOptions:
    """How ``python -m training export`` publishes a run (the defaults of its flags)."""

    name: str = contract.DEFAULT_MODEL_NAME
    version: int | None = None  # None: one above every number in use
    precision: str = DEFAULT_PRECISION
    resize: str = DEFAULT_RESIZE
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    min_float32_agreement: float = 0.99
    """float16/bfloat16: share that must equal the float32 model's."""
    warmup_batches: tuple[int, ...] = ()
    """Also warm up batches of these sizes (a GPU server that batches; on CPUs they slow later
    single-frame requests)."""
    optimizations: InferenceOptimizations = InferenceOptimizations()
    scales: tuple[float, ...] = PLAIN_SCALES
    """Multi-scale inference in the served graph: the network at each factor of the network
    size, softmax averaged (slower, more accurate: ``evaluate --scales`` measures both)."""
    flip: bool = False
    """Also average the mirror image's softmax (twice the network's work)."""

    def __post_init__(self):
        _choice("precision", self.precision, PRECISIONS)
        _choice("resize", self.resize, RESIZE_MODES)
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"scales must be positive factors, got {self.scales}")
        if self.version is not None and self.version < 1:
            raise ValueError(f"version must be a positive integer, got {self.version}")
        for name in ("min_agreement", "min_float32_agreement"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be a share in (0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class TfliteOptions:
    """How ``python -m training export-tflite`` converts a run."""

    resize: str = DEFAULT_RESIZE
    optimize: str = "none"
    """``float16``: weights stored as float16 (half the size); ``int8``: full-integer network
    at a fixed size, the frame resized by the onboard runner."""
    min_agreement: float | None = None
    """None: :data:`DEFAULT_MIN_AGREEMENT`, for int8 :data:`DEFAULT_MIN_INT8_AGREEMENT`."""
    frame_size: tuple[int, int] = (480, 640)
    """int8: (height, width) of the camera frames the fixed network size is chosen for."""

    def __post_init__(self):
        _choice("resize", self.resize, RESIZE_MODES)
        _choice("optimize", self.optimize, TFLITE_OPTIMIZATIONS)

    @property
    def agreement_floor(self) -> float:
        """The share of equal class-map pixels verification requires."""
        if self.min_agreement is not None:
            return self.min_agreement
        return DEFAULT_MIN_INT8_AGREEMENT if self.optimize == "int8" else DEFAULT_MIN_AGREEMENT


@dataclass(frozen=True)
class OnnxOptions:
    """How ``python -m training export-onnx`` converts a run."""

    resize: str = DEFAULT_RESIZE
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    opset: int = 17
    """ONNX opset (17: ONNX Runtime 1.14 and later, TensorRT 8.6 and later)."""

    def __post_init__(self):
        _choice("resize", self.resize, RESIZE_MODES)


def default_of(options: type, name: str) -> Any:
    """The default a dataclass gives field ``name`` (what a flag without a value means)."""
    for f in fields(options):
        if f.name == name and f.default is not MISSING:
            return f.default
        if f.name == name and f.default_factory is not MISSING:
            return f.default_factory()
    raise KeyError(f"{options.__name__} has no field {name!r}")
