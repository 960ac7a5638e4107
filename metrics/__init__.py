"""Task metrics: torchmetrics ``Metric`` subclasses, one file per task family. Classification,
localization and anomaly scores are fractions in [0, 1]; hand errors are millimetres; caption
scores are coco-caption's (CIDEr-D unscaled, papers print it x100)."""
from .anomaly import FrameAUROC
from .captioning import CaptionMetrics, CiderD
from .classification import BalancedAccuracy, ForgeryAUC, Top1Accuracy
from .hands import IntagHandError, InterHandJointError, ProcrustesError
from .spatial import ForgeryNetPixelMetrics, SpatialLocalizationMetrics
from .temporal import TemporalAP, TemporalAR

__all__ = [
    "Top1Accuracy",
    "BalancedAccuracy",
    "ForgeryAUC",
    "SpatialLocalizationMetrics",
    "ForgeryNetPixelMetrics",
    "TemporalAP",
    "TemporalAR",
    "FrameAUROC",
    "IntagHandError",
    "InterHandJointError",
    "ProcrustesError",
    "CaptionMetrics",
    "CiderD",
]
