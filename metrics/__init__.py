"""Task metrics (torchmetrics ``Metric`` subclasses; every value is a fraction in [0, 1])."""
from .classification import BalancedAccuracy, ForgeryAUC, Top1Accuracy
from .spatial import ForgeryNetPixelMetrics, SpatialLocalizationMetrics

__all__ = [
    "Top1Accuracy",
    "BalancedAccuracy",
    "ForgeryAUC",
    "SpatialLocalizationMetrics",
    "ForgeryNetPixelMetrics",
]
from .temporal import TemporalAP, TemporalAR  # noqa: E402

__all__ += ["TemporalAP", "TemporalAR"]
from .anomaly import FrameAUROC  # noqa: E402

__all__ += ["FrameAUROC"]
from .hands import IntagHandError, InterHandJointError, ProcrustesError  # noqa: E402

__all__ += ["IntagHandError", "InterHandJointError", "ProcrustesError"]
