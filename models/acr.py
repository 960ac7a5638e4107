"""ACR: two-hand 3D reconstruction from one image (Yu et al., "ACR: Attention Collaboration-based
Regressor for Arbitrary Two-Hand Reconstruction", CVPR 2023; official code
github.com/ZhengdiYu/Arbitrary-Hands-3D-Reconstruction, inference only).

``ACR`` is a ``MultiTaskModule`` whose defaults are the release's: an HRNet-W32 trunk (timm
``hrnet_w32``, its stride-4, 32-channel branch; ``acr/model.py`` ``HigherResolutionNet``) read
by one :class:`~polyvision.heads.hands.TwoHandHead`, inputs scaled as ``x/255·2−1`` (the
release's normalisation, not ImageNet's), Adam at 3e-4 with weight decay 1e-6 (``acr/config.py``,
ROMP's defaults). Any library backbone works by config (``configs/acr/interhand_swin_t.yaml``).
"""
from __future__ import annotations

from typing import Any

from polyvision.heads.base import Head
from polyvision.heads.hands import TwoHandHead
from polyvision.models.base import MultiTaskModule

# ACR's normalisation, x/255*2-1, written as a mean and std over [0, 1] pixels.
MINUS_ONE_TO_ONE = (0.5, 0.5, 0.5)
HRNET_STRIDE_4 = {"out_indices": [1], "feature_location": ""}  # timm: the raw 32-channel branch at stride 4
ACR_OPTIMIZER = {"class_path": "torch.optim.Adam", "init_args": {"lr": 3e-4, "weight_decay": 1e-6}}


class ACR(MultiTaskModule):
    """ACR with its paper defaults; ``heads`` defaults to one ``hands`` head on ``mano_dir``.

    Args:
        mano_dir: folder with MANO_RIGHT.pkl and MANO_LEFT.pkl (or ``generated``), used when
            ``heads`` is not given.
        cross_hand_prior: the default head's cross-hand prior (off for single-hand data).
        heads, backbone, backbone_kwargs, ...: as ``MultiTaskModule``.
    """

    def __init__(self, heads: dict[str, Head] | None = None, mano_dir: str | None = None, cross_hand_prior: bool = True,
                 backbone: str | dict[str, Any] = "hrnet_w32", backbone_kwargs: dict[str, Any] | None = None,
                 optimizer: dict[str, Any] | None = None, **kwargs: Any):
        if heads is None:
            heads = {"hands": TwoHandHead(mano_dir=mano_dir, cross_hand_prior=cross_hand_prior)}
        if backbone_kwargs is None and backbone == "hrnet_w32":
            backbone_kwargs = dict(HRNET_STRIDE_4)
        kwargs.setdefault("input_keys", ("image",))
        kwargs.setdefault("mean", MINUS_ONE_TO_ONE)
        kwargs.setdefault("std", MINUS_ONE_TO_ONE)
        super().__init__(heads=heads, backbone=backbone, backbone_kwargs=backbone_kwargs,
                         optimizer=optimizer or ACR_OPTIMIZER, **kwargs)
        for key in ("mano_dir", "cross_hand_prior"):  # the head's spec records them
            self.hparams.pop(key, None)
