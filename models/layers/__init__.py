"""Building blocks shared by several systems and heads.

Layers import nothing from polyvision but ``polyvision.errors`` and each other, so models,
heads and datamodules can all use them.
"""
from polyvision.models.layers.attention import FeedForward, LatentCrossAttention
from polyvision.models.layers.conv import DoubleConv
from polyvision.models.layers.normalization import IMAGENET_MEAN, IMAGENET_STD
from polyvision.models.layers.positional import sinusoidal_table
from polyvision.models.layers.spec import TRUSTED_PREFIXES, check_trusted, import_class
from polyvision.models.layers.weights import check_weights_file, load_state_dict_file

__all__ = [
    "DoubleConv",
    "FeedForward",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LatentCrossAttention",
    "TRUSTED_PREFIXES",
    "check_trusted",
    "check_weights_file",
    "import_class",
    "load_state_dict_file",
    "sinusoidal_table",
]
