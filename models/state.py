"""STATE: object-level reconstruction with test-time input perturbation for video anomaly
detection ("Making Reconstruction-based Method Great Again for Video Anomaly Detection",
Wang et al., ICDM 2022, arXiv 2301.12048; official code: github.com/wyzjack/MRMGA4VAD).

The model sees 7-frame × 32×32 RGB cubes of objects (built by ``datamodules/anomaly/pipeline.py``)
and has two branches that share only their input (official ``state_model.py``,
``ConvTransformer_recon_correct``):

- **raw**: spatial encoder → convolutional-attention temporal encoder → spatial decoder,
  reconstructing the RGB cube (``FrameReconstructionHead``);
- **flow**: the same structure with its own weights, predicting the cube's optical flow from
  the RGB cube (``FlowPredictionHead``).

``STATEEncoder`` is the backbone (named by its class path, ``DEFAULT_BACKBONE``): it returns one clip
feature map ``(B, 128, T, 8, 8)`` per branch. The heads are the decoders. Training loss:
MSE raw + MSE flow (λ 1/1, ``loss_weights``); Adam, lr 1e-3, eps 1e-7 (official ``train.py``).

Scoring (official ``test.py``): one descent step on the input,
x' = x − ε·sign(∇ₓ[MSE(x, f(x)) + MSE(flow, g(x))]), then per-object SSE of each branch on
x', z-normalised with the mean and std of the training SSEs, fused as ``Σ w_h·z_h``
(``score_weights``), frame score = max over the frame's objects. Frames with no object get
``empty_score`` (default −1e5, STATE's: they rank below every scored frame; ``None`` gives
them the minimum fused training score instead).

The training statistics live in persistent buffers, so they are part of the checkpoint. They
are computed from the datamodule's training cubes (eval mode, no perturbation) at the end of
training and before each validation during ``fit``; every optimisation step marks them
stale, so a checkpoint never pairs weights with statistics of other weights. A stale
checkpoint is completed at test time from the datamodule's training cubes, with a warning.

Gradients at test time: Lightning runs evaluation under ``torch.inference_mode`` by
default, where ``torch.enable_grad()`` cannot help. The Trainer is built by LightningCLI,
so STATE switches its own Trainer's loops to ``no_grad`` (``loop.inference_mode = False``)
in ``setup()``, which Lightning calls after the loops exist and before any of them runs;
each evaluation step then re-enables gradients for the perturbation only.

Size: 2,568,061 parameters with 3 temporal layers (Ped2, Avenue), 3,464,589 with 5
(ShanghaiTech). The released code also registers, per head, a feed-forward conv it never
calls (and a template layer it only deep-copies); those unused parameters are not built
here: with the per-head ones counted, the 3-layer model is the ≈2.8 M of the official
``module.py``. Where that code allows more than one reading, this file takes: one learned
positional table per branch, shared by all layers and heads and added to the Q/K conv
inputs; GroupNorm after the feed-forward residual of each layer.

One file for the model family, as timm keeps them: the encoder blocks, the encoder and the
LightningModule with its scoring (about 600 lines).
"""
from __future__ import annotations

import inspect
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor, nn

from polyvision.errors import ConfigError
from polyvision.heads.base import Head
from polyvision.heads.reconstruction import FlowPredictionHead, FrameReconstructionHead, ReconstructionHead
from polyvision.metrics.anomaly import FrameAUROC
from polyvision.models.base import MultiTaskModule
from polyvision.models.layers import DoubleConv, sinusoidal_table

__all__ = [
    "ConvAttentionHead",
    "ConvAttentionLayer",
    "ConvTransformerEncoder",
    "SpatialEncoder",
    "STATEBranch",
    "STATEEncoder",
    "STATE",
    "count_parameters",
]

PAPER_WIDTHS = (32, 64, 128)
# Adam with PyTorch's default rate, eps 1e-7 and no weight decay (official ``train.py``).
STATE_OPTIMIZER: dict[str, Any] = {"class_path": "torch.optim.Adam",
                                   "init_args": {"lr": 1e-3, "eps": 1e-7, "weight_decay": 0.0}}
# STATE's backbone spec; ``STATEEncoder``'s defaults are the paper's Ped2/Avenue model.
DEFAULT_BACKBONE: dict[str, Any] = {"class_path": "polyvision.models.state.STATEEncoder", "init_args": {}}


# --------------------------------------------------------------------------- architecture (official state_model.py, module.py)


class SpatialEncoder(nn.Module):
    """Per-frame encoder: DoubleConv(in→w0), then [MaxPool2 + DoubleConv] per further width.
    32×32 → 128×8×8 with the paper's widths (32, 64, 128)."""

    def __init__(self, in_channels: int = 3, widths: tuple[int, ...] = PAPER_WIDTHS):
        super().__init__()
        stages: list[nn.Module] = [DoubleConv(in_channels, widths[0])]
        for previous, width in zip(widths[:-1], widths[1:]):
            stages.append(nn.Sequential(nn.MaxPool2d(2), DoubleConv(previous, width)))
        self.stages = nn.Sequential(*stages)

    def forward(self, x: Tensor) -> Tensor:
        return self.stages(x)


class ConvAttentionHead(nn.Module):
    """One head of STATE's learnable convolutional attention (official ``module.py``), on a
    ``dim``-channel slice.

    Q = LeakyReLU(Conv3×3(x + p)), K = LeakyReLU(Conv3×3'(x + p)), V = LeakyReLU(Conv3×3'(x))
    (K and V share one conv; the positional code p reaches Q and K only). For every frame
    pair (i, j) a Conv3×3 over [Q_i, K_j] (2·dim → 1) + LeakyReLU gives a per-pixel logit;
    softmax over j weights V_j.

    Convolutions are linear, which the implementation uses twice without changing the
    function or the parameters: conv(x + p) = conv(x) + conv(p), so one convolution of x
    serves K and V and the positional part is convolved once per frame position, not per
    sample; and a convolution of [Q_i, K_j] is the sum of convolutions of its halves, so the
    T×T pair logits come from T query maps and T key maps instead of T² convolutions.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.query = nn.Conv2d(dim, dim, 3, padding=1)
        self.key_value = nn.Conv2d(dim, dim, 3, padding=1)
        self.similarity = nn.Conv2d(2 * dim, 1, 3, padding=1)

    def forward(self, x: Tensor, positions: Tensor | None) -> Tensor:
        """``x``: (B, T, dim, h, w); ``positions``: (T, dim) or None. Returns (B, T, dim, h, w)."""
        b, t, d, h, w = x.shape
        frames = x.reshape(b * t, d, h, w)
        q = self.query(frames).view(b, t, d, h, w)
        kv = self.key_value(frames).view(b, t, d, h, w)
        v = F.leaky_relu(kv, 0.2)
        if positions is not None:
            planes = positions[:, :, None, None].expand(t, d, h, w)
            q = q + F.conv2d(planes, self.query.weight, None, padding=1)
            kv = kv + F.conv2d(planes, self.key_value.weight, None, padding=1)
        q, k = F.leaky_relu(q, 0.2), F.leaky_relu(kv, 0.2)
        weight_q, weight_k = self.similarity.weight.split(d, dim=1)
        logit_q = F.conv2d(q.reshape(b * t, d, h, w), weight_q, self.similarity.bias, padding=1).view(b, t, 1, h, w)
        logit_k = F.conv2d(k.reshape(b * t, d, h, w), weight_k, None, padding=1).view(b, 1, t, h, w)
        attention = F.leaky_relu(logit_q + logit_k, 0.2).softmax(dim=2)  # (B, T_i, T_j, h, w)
        return torch.einsum("bijhw,bjdhw->bidhw", attention, v)


class ConvAttentionLayer(nn.Module):
    """Heads on channel slices (concatenated) + residual; Conv3×3 feed-forward + LeakyReLU +
    residual; GroupNorm(4) (official ``module.py``)."""

    def __init__(self, dim: int = 128, num_heads: int = 4, norm_groups: int = 4):
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"model.backbone.init_args: width {dim} is not divisible by num_heads={num_heads}")
        self.heads = nn.ModuleList(ConvAttentionHead(dim // num_heads) for _ in range(num_heads))
        self.feed_forward = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.LeakyReLU(0.2))
        self.norm = nn.GroupNorm(norm_groups, dim)

    def forward(self, x: Tensor, positions: Tensor | None) -> Tensor:
        b, t, c, h, w = x.shape
        slices = x.chunk(len(self.heads), dim=2)
        x = x + torch.cat([head(part, positions) for head, part in zip(self.heads, slices)], dim=2)
        flat = x.reshape(b * t, c, h, w)
        flat = self.norm(flat + self.feed_forward(flat))
        return flat.view(b, t, c, h, w)


class ConvTransformerEncoder(nn.Module):
    """``num_layers`` ``ConvAttentionLayer``s sharing one positional code: a learned
    ``Embedding(max_frames, head_dim)`` (STATE's default, which caps clips at 10 frames) or
    the 0.5-scaled sine table."""

    def __init__(self, dim: int = 128, num_layers: int = 3, num_heads: int = 4, positional: str = "learned",
                 max_frames: int = 10):
        super().__init__()
        if positional not in ("learned", "sine", "none"):
            raise ConfigError(f"model.backbone.init_args.positional: '{positional}' is not learned, sine or none")
        self.head_dim = dim // num_heads
        self.positional = positional
        self.max_frames = max_frames
        self.position_embedding = nn.Embedding(max_frames, self.head_dim) if positional == "learned" else None
        self.layers = nn.ModuleList(ConvAttentionLayer(dim, num_heads) for _ in range(num_layers))

    def positions(self, length: int, device: torch.device) -> Tensor | None:
        if self.positional == "none":
            return None
        if self.position_embedding is not None:
            if length > self.max_frames:
                raise ValueError(f"the learned positional embedding holds {self.max_frames} frames, got clips of {length}")
            return self.position_embedding(torch.arange(length, device=device))
        return sinusoidal_table(length, self.head_dim, device, scale=0.5)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, C, h, w) -> (B, T, C, h, w)."""
        positions = self.positions(x.shape[1], x.device)
        for layer in self.layers:
            x = layer(x, positions)
        return x


class STATEBranch(nn.Module):
    """Spatial encoder (weights shared over frames) then the temporal encoder:
    (B, 3, T, H, W) -> (B, C, T, H/4, W/4)."""

    def __init__(self, in_channels: int, widths: tuple[int, ...], num_layers: int, num_heads: int,
                 positional: str, max_frames: int):
        super().__init__()
        self.spatial = SpatialEncoder(in_channels, widths)
        self.temporal = ConvTransformerEncoder(widths[-1], num_layers, num_heads, positional, max_frames)

    def forward(self, clip: Tensor) -> Tensor:
        b, c, t, h, w = clip.shape
        frames = self.spatial(clip.transpose(1, 2).reshape(b * t, c, h, w))
        encoded = self.temporal(frames.view(b, t, *frames.shape[1:]))
        return encoded.transpose(1, 2)


class STATEEncoder(nn.Module):
    """STATE's backbone: one ``STATEBranch`` per output (default ``raw`` and ``flow``), all
    reading the same RGB clip; returns their feature maps in order.

    Args:
        widths: spatial encoder widths (paper: 32, 64, 128); the last is the temporal width.
        num_layers: temporal encoder layers (paper: 3 for Avenue and Ped2, 5 for ShanghaiTech).
        num_heads: attention heads (paper: 4).
        positional: ``learned`` (paper default), ``sine`` or ``none``.
        max_frames: rows of the learned positional table (paper: 10).
        branches: names of the branches, one feature map each.
        in_channels: input channels (3, RGB).
    """

    def __init__(self, widths: list[int] | tuple[int, ...] = PAPER_WIDTHS, num_layers: int = 3, num_heads: int = 4,
                 positional: str = "learned", max_frames: int = 10, branches: list[str] | tuple[str, ...] = ("raw", "flow"),
                 in_channels: int = 3):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if not widths or num_layers < 0 or num_heads < 1 or not branches:
            raise ConfigError("model.backbone.init_args: STATE needs widths, num_layers >= 0, num_heads >= 1 and a branch")
        self.branches = nn.ModuleDict({name: STATEBranch(in_channels, widths, num_layers, num_heads, positional, max_frames)
                                       for name in branches})
        self.out_channels = [widths[-1]] * len(branches)
        self.strides = [2 ** (len(widths) - 1)] * len(branches)

    def forward(self, x: Tensor) -> list[Tensor]:
        if x.dim() != 5:
            raise ValueError(f"STATEEncoder takes clips (B, 3, T, H, W), got {tuple(x.shape)}")
        return [branch(x) for branch in self.branches.values()]


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------- the LightningModule


def default_heads() -> dict[str, Head]:
    return {"raw": FrameReconstructionHead(feature_index=0), "flow": FlowPredictionHead(feature_index=1)}


class STATE(MultiTaskModule):
    """STATE as a ``MultiTaskModule``: ``STATEEncoder`` backbone + reconstruction heads, with
    its own evaluation (perturbation, z-scored fusion, frame AUROC) and ``predict_video``.

    Batches (``STATEDataModule``): ``video`` uint8 (B, 3, 7, 32, 32) object cubes, ``flow``
    float (B, 2, 7, 32, 32), ``has_object`` bool (B,) (False marks a frame without objects),
    ``label`` (B,) frame label, ``video_index`` and ``frame_index`` (B,), ``meta``.

    Args:
        heads: name -> ``ReconstructionHead`` (default: ``raw`` FrameReconstructionHead on
            map 0, ``flow`` FlowPredictionHead on map 1).
        backbone: the encoder's ``{class_path, init_args}`` spec (default ``STATEEncoder`` at
            paper size; see its arguments).
        backbone_kwargs: extra encoder arguments, merged over the spec's ``init_args``.
        loss_weights: training weight per head (paper: 1/1).
        score_weights: weight of each head's z-scored SSE in the anomaly score (paper: raw 0.3,
            flow 1 on Avenue; 1/1 otherwise). Heads not named score 0; None weighs every head 1.
        epsilon: perturbation step on the [0, 1] pixel scale (paper: 0.01 Ped2, 0.002 Avenue,
            0.005 ShanghaiTech); 0 scores without perturbation.
        empty_score: score of a frame with no object (STATE: −1e5, below every scored frame);
            None = the minimum fused training score. Test cubes are perturbed, which lowers their
            error, so normal frames can score below that minimum: None is not STATE's ranking.
        smoothing_sigma: Gaussian smoothing of frame scores for the AUROCs (0 = off, as STATE).
        optimizer: the optimiser spec (default ``STATE_OPTIMIZER``: Adam, lr 1e-3, eps 1e-7, no
            weight decay, as the official ``train.py``; STATE has no scheduler).
        input_geometry: as ``MultiTaskModule``; for STATE it carries the object-pipeline
            settings (``PipelineSettings``) that ``score_video`` uses to turn a video into cubes,
            filled in from the datamodule at ``fit``/``test`` time, so a checkpoint makes its
            cubes the way it was trained.
    """

    def __init__(
        self,
        heads: dict[str, Head] | None = None,
        backbone: str | dict[str, Any] = DEFAULT_BACKBONE,
        backbone_kwargs: dict[str, Any] | None = None,
        loss_weights: dict[str, float] | None = None,
        score_weights: dict[str, float] | None = None,
        epsilon: float = 0.01,
        empty_score: float | None = -1e5,
        smoothing_sigma: float = 0.0,
        optimizer: dict[str, Any] | None = None,
        input_geometry: dict[str, dict[str, Any]] | None = None,
    ):
        heads = heads if heads is not None else default_heads()
        super().__init__(heads=heads, backbone=backbone, backbone_kwargs=backbone_kwargs, loss_weights=loss_weights,
                         input_geometry=input_geometry, input_keys=("video",), optimizer=optimizer or STATE_OPTIMIZER,
                         mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
        # STATE's own signature replaces the base class's in the saved hyper-parameters, so
        # load_model passes back exactly the arguments this constructor takes.
        head_specs = self.hparams["heads"]
        self.save_hyperparameters(ignore=["heads"])
        accepted = set(inspect.signature(type(self).__init__).parameters)
        for key in [k for k in self.hparams if k not in accepted and not k.startswith("_")]:
            del self.hparams[key]
        self.hparams["heads"] = head_specs
        for name, head in heads.items():
            if not isinstance(head, ReconstructionHead):
                raise ConfigError(f"model.heads.{name}: STATE scores reconstruction errors; "
                                  f"{type(head).__name__} is not a ReconstructionHead")
        weights = dict.fromkeys(heads, 1.0) if score_weights is None else dict(score_weights)
        unknown = [name for name in weights if name not in heads]
        if unknown:
            raise ConfigError(f"model.score_weights: unknown head '{unknown[0]}' (heads: {', '.join(heads)})")
        if epsilon < 0:
            raise ConfigError(f"model.epsilon: must be >= 0, got {epsilon}")
        self.head_names = list(heads)
        self.register_buffer("score_weight", torch.tensor([float(weights.get(n, 0.0)) for n in self.head_names]),
                             persistent=False)
        # Training-set SSE statistics per head (order of self.head_names), saved in checkpoints.
        self.register_buffer("train_error_mean", torch.zeros(len(heads)))
        self.register_buffer("train_error_std", torch.ones(len(heads)))
        self.register_buffer("train_min_score", torch.tensor(0.0))
        self.register_buffer("statistics_ready", torch.tensor(False))
        self.frame_metrics = nn.ModuleDict({stage: FrameAUROC(smoothing_sigma=smoothing_sigma) for stage in ("val", "test")})
        self.perturbation_log: dict[str, list[Tensor]] = {}

    # ----------------------------------------------------------------- forward
    def forward_inputs(self, inputs: Tensor, batch: dict[str, Any]) -> dict[str, dict[str, Tensor]]:
        """Heads' outputs for float cubes ``inputs`` in [0, 1] (other batch keys, e.g. flow, kept)."""
        return self({**batch, "video": inputs})

    def errors(self, outputs: dict[str, dict[str, Tensor]]) -> Tensor:
        """Per-sample SSE of every head, (B, heads); a head without a target contributes 0."""
        columns = []
        batch_size = next(iter(outputs.values()))["prediction"].shape[0]
        for name in self.head_names:
            error = self.heads[name].errors(outputs[name])
            columns.append(error if error is not None else torch.zeros(batch_size, device=self.device))
        return torch.stack(columns, dim=1)

    def fuse(self, errors: Tensor) -> Tensor:
        """z-score each head's SSE with the training statistics and sum with ``score_weights``."""
        z = (errors - self.train_error_mean) / self.train_error_std.clamp_min(1e-12)
        return (z * self.score_weight).sum(dim=1)

    def perturb(self, inputs: Tensor, batch: dict[str, Any]) -> tuple[Tensor, Tensor | None]:
        """One descent step on the input (official ``test.py``): x − ε·sign(∇ₓ Σ_heads MSE).
        Returns the perturbed cubes and the clean cubes' per-head SSE (None when ε = 0).

        The raw target is the input itself, so the gradient runs through it as well;
        BatchNorm uses its running statistics (eval mode); no clamping, as in STATE. STATE
        batches one frame's objects at a time; any batching gives the same step, because
        samples do not interact in eval mode and the batch mean only scales each sample's
        gradient, of which only the sign is used."""
        epsilon = float(self.hparams.epsilon)
        if epsilon == 0:
            return inputs, None
        if torch.is_inference_mode_enabled():
            raise RuntimeError("STATE's test-time perturbation needs gradients, but this runs under "
                               "torch.inference_mode; run it with Trainer(inference_mode=False)")
        with torch.enable_grad():
            x = inputs.detach().requires_grad_(True)
            outputs = self.forward_inputs(x, batch)
            losses = [loss for name in self.head_names for loss in self.heads[name].loss(outputs[name], batch).values()]
            # backward(inputs=...) rather than autograd.grad: the same gradient, parameters'
            # .grad untouched, and it also runs under module-hook tools (FLOP counters).
            sum(losses).backward(inputs=[x])
        return (x - epsilon * x.grad.sign()).detach(), self.errors(outputs).detach()

    def score_objects(self, batch: dict[str, Any], log_stage: str | None = None) -> Tensor:
        """Anomaly score of every cube of the batch (``empty_score`` where ``has_object`` is False)."""
        inputs = self.normalize(batch["video"])
        present = batch.get("has_object")
        present = torch.ones(len(inputs), dtype=torch.bool, device=inputs.device) if present is None else present.bool()
        scores = torch.full((len(inputs),), self.empty_score(), device=inputs.device)
        if not bool(present.any()):
            return scores
        objects = {k: (v[present] if isinstance(v, Tensor) and v.dim() > 0 and len(v) == len(present) else v)
                   for k, v in batch.items()}
        perturbed, clean = self.perturb(inputs[present], objects)
        with torch.no_grad():
            errors = self.errors(self.forward_inputs(perturbed, objects))
        scores[present] = self.fuse(errors)
        if log_stage is not None and clean is not None:
            entry = torch.stack([clean.sum(dim=1).mean(), errors.sum(dim=1).mean()])
            self.perturbation_log.setdefault(log_stage, []).append(entry)
        return scores

    def empty_score(self) -> float:
        if self.hparams.empty_score is not None:
            return float(self.hparams.empty_score)
        return float(self.train_min_score)

    # ----------------------------------------------------------------- Lightning hooks
    def setup(self, stage: str) -> None:
        super().setup(stage)
        trainer = self._trainer
        if trainer is None:
            return
        # Evaluation needs autograd for the perturbation; inference_mode would forbid it.
        for loop in (trainer.validate_loop, trainer.test_loop, trainer.predict_loop, trainer.fit_loop.epoch_loop.val_loop):
            loop.inference_mode = False

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        super().on_train_batch_start(batch, batch_idx)
        self.statistics_ready.fill_(False)  # the weights are about to change

    def on_train_epoch_end(self) -> None:
        if self.is_last_epoch() and not bool(self.statistics_ready):
            self.update_training_statistics()

    def is_last_epoch(self) -> bool:
        trainer = self.trainer
        processed = trainer.fit_loop.epoch_progress.current.processed
        max_epochs, max_steps = trainer.max_epochs, trainer.max_steps
        return bool(trainer.should_stop
                    or (max_epochs is not None and max_epochs >= 0 and processed >= max_epochs)
                    or (max_steps is not None and max_steps >= 0 and trainer.global_step >= max_steps))

    def on_validation_epoch_start(self) -> None:
        if not self.trainer.sanity_checking and not bool(self.statistics_ready):
            self.update_training_statistics()

    def on_test_start(self) -> None:
        if not bool(self.statistics_ready):
            rank_zero_warn("STATE: this checkpoint holds no training-error statistics for its weights (training "
                           "stopped before they were computed); computing them now from the training cubes")
            self.update_training_statistics()

    @torch.no_grad()
    def update_training_statistics(self) -> None:
        """Mean and std of each head's per-cube SSE over the training cubes (eval mode, no
        perturbation), and the minimum fused score; shared across ranks."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "statistics_dataloader"):
            raise ConfigError("STATE needs its training cubes to normalise scores: use a datamodule with "
                              "statistics_dataloader() (STATEDataModule)")
        loader = datamodule.statistics_dataloader(self.trainer.global_rank, self.trainer.world_size)
        was_training = self.training
        self.eval()
        errors = []
        for batch in loader:
            batch = self.transfer_batch_to_device(batch, self.device, 0)
            if not len(batch.get("meta") or []):
                continue
            errors.append(self.errors(self(batch)))
        self.train(was_training)
        local = torch.cat(errors) if errors else torch.zeros(0, len(self.head_names), device=self.device)
        local = local.double()
        sums = torch.stack([local.new_tensor(float(len(local))).expand(len(self.head_names)), local.sum(0),
                            local.pow(2).sum(0)])
        sums = self.all_gather(sums).reshape(-1, 3, len(self.head_names)).sum(0)
        count = sums[0, 0]
        if count < 2:
            raise ConfigError("STATE: fewer than 2 training cubes; the error statistics are undefined")
        mean = sums[1] / count
        std = (sums[2] / count - mean.pow(2)).clamp_min(0).sqrt()  # population std, as numpy's default
        self.train_error_mean.copy_(mean.float())
        self.train_error_std.copy_(std.float())
        local_min = self.fuse(local.float()).min() if len(local) else torch.tensor(float("inf"), device=self.device)
        self.train_min_score.copy_(self.all_gather(local_min.reshape(1)).min())
        self.statistics_ready.fill_(True)

    # ----------------------------------------------------------------- steps
    def evaluation_step(self, stage: str, batch: dict[str, Any]) -> None:
        for _, sub_batch in self.sub_batches(batch):
            self.count_skipped(stage, sub_batch)
            if not sub_batch.get("meta"):
                continue
            scores = self.score_objects(sub_batch, log_stage=stage)
            if "label" in sub_batch:
                self.frame_metrics[stage].update(scores, sub_batch["label"], sub_batch["video_index"],
                                                 sub_batch["frame_index"])

    def log_stage(self, stage: str) -> None:
        metric = self.frame_metrics[stage]
        if metric.update_count:
            values = metric.compute()
            self.log_dict({f"{stage}/frame_auroc_{k}": v for k, v in values.items()}, sync_dist=False)
            metric.reset()
        entries = self.perturbation_log.pop(stage, [])
        if entries:
            mean = torch.stack(entries).mean(0)
            self.log(f"{stage}/sse_clean", mean[0], sync_dist=True)
            self.log(f"{stage}/sse_perturbed", mean[1], sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self.log_stage("val")

    def on_test_epoch_end(self) -> None:
        self.log_stage("test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        results = []
        for _, sub_batch in self.sub_batches(batch):
            if not sub_batch.get("meta"):
                continue
            scores = self.score_objects(sub_batch).tolist()
            present = sub_batch.get("has_object")
            for index, meta in enumerate(sub_batch["meta"]):
                record = dict(meta) if isinstance(meta, dict) else {}
                record["score"] = scores[index]
                record["has_object"] = bool(present[index]) if present is not None else True
                results.append(record)
        return results

    # ----------------------------------------------------------------- inference on a video
    def pipeline_settings(self):
        from polyvision.datamodules.anomaly.pipeline import PipelineSettings

        pipeline = next((entry["object_pipeline"] for entry in (self.input_geometry or {}).values()
                         if "object_pipeline" in entry), None)
        return PipelineSettings.from_dict(pipeline)

    def score_video(self, path: str | Path, batch_size: int = 256) -> dict[str, Any]:
        """Frame scores of one video file or frame folder: cubes from the object pipeline the
        checkpoint was trained with, perturbed and scored; max over objects per frame.

        Returns ``scores`` in STATE's ranking convention (frames with no object get
        ``empty_score``, −1e5 by default, below every scored frame; what the AUROC uses),
        ``display_scores`` (the same with NaN where a frame has no object: for people and
        plots), ``has_object`` (bool per frame), ``objects_per_frame``, ``num_frames`` and
        ``fps``. ``predict_video`` writes frames without objects as ``null`` in
        ``<stem>.scores.json`` and as gaps in ``<stem>.scores.png``."""
        from polyvision.datamodules.anomaly.pipeline import ObjectPipeline

        if not bool(self.statistics_ready):
            warnings.warn("STATE: the model holds no training-error statistics; scores are raw SSE sums",
                          stacklevel=2)
        pipeline = ObjectPipeline(self.pipeline_settings(), device=self.device)
        extraction = pipeline.extract_video(path)
        num_frames = extraction.num_frames
        frame_scores = np.full(num_frames, -np.inf, dtype=np.float64)
        was_training = self.training
        self.eval()
        with torch.inference_mode(False):
            for start in range(0, len(extraction.frame_of_cube), batch_size):
                stop = min(start + batch_size, len(extraction.frame_of_cube))
                batch = {"video": torch.from_numpy(extraction.raw[start:stop]).to(self.device),
                         "flow": torch.from_numpy(extraction.flow[start:stop]).float().to(self.device),
                         "meta": [{}] * (stop - start)}
                scores = self.score_objects(batch).detach().cpu().double().numpy()
                np.maximum.at(frame_scores, extraction.frame_of_cube[start:stop], scores)
        has_object = ~np.isneginf(frame_scores)
        display_scores = np.where(has_object, frame_scores, np.nan)
        frame_scores[~has_object] = self.empty_score()
        self.train(was_training)
        return {"scores": frame_scores, "display_scores": display_scores, "has_object": has_object,
                "num_frames": num_frames, "fps": extraction.fps,
                "objects_per_frame": np.bincount(extraction.frame_of_cube, minlength=num_frames)}

    def predict_video(self, path: str | Path, output_dir: str | Path, stem: str) -> dict[str, Any]:
        """``polyvision infer`` on a video: per-frame scores (``<stem>.scores.json``) and a
        score curve (``<stem>.scores.png``) with ground-truth anomalous frames shaded when the
        video sits in a dataset layout whose labels can be found (the layouts of
        ``polyvision.datamodules.anomaly.readers``).

        Frames with no object are ``null`` in ``frame_scores`` and gaps in the curve (whose
        axis spans the real scores); ``max_score``/``peak_frame`` are over scored frames
        (``null`` if none). ``frame_auroc`` ranks with STATE's convention (no object: −1e5)."""
        from polyvision.datamodules.anomaly.readers import find_ground_truth

        path = Path(path)
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        result = self.score_video(path)
        scores, shown = result["scores"], result["display_scores"]
        scored = ~np.isnan(shown)
        labels = find_ground_truth(path, result["num_frames"])
        record: dict[str, Any] = {
            "num_frames": int(result["num_frames"]),
            "fps": float(result["fps"]),
            "num_objects": int(result["objects_per_frame"].sum()),
            "frames_without_objects": int((~scored).sum()),
            "max_score": float(np.nanmax(shown)) if scored.any() else None,
            "peak_frame": int(np.nanargmax(shown)) if scored.any() else None,
        }
        if labels is not None:
            record["anomalous_frames"] = int(labels.sum())
            if 0 < labels.sum() < len(labels):
                from polyvision.metrics.classification import binary_roc_auc

                record["frame_auroc"] = float(binary_roc_auc(torch.from_numpy(scores), torch.from_numpy(labels)))
        json_path = output_dir / f"{stem}.scores.json"
        json_path.write_text(json.dumps({
            "path": str(path), "frame_scores": [round(float(s), 6) if ok else None for s, ok in zip(shown, scored)],
            "objects_per_frame": result["objects_per_frame"].tolist(),
            "ground_truth": labels.tolist() if labels is not None else None, **record}, indent=1) + "\n")
        png_path = output_dir / f"{stem}.scores.png"
        plot_scores(shown, labels, png_path, title=path.name, fps=result["fps"])
        record.update({"scores_json": str(json_path), "scores_png": str(png_path)})
        return record


def plot_scores(scores: np.ndarray, labels: np.ndarray | None, path: Path, title: str, fps: float) -> None:
    """Anomaly score per frame (NaN: no object, drawn as a gap; the y-axis spans the finite
    scores), with runs of ground-truth anomalous frames shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(10, 3), dpi=100)
    frames = np.arange(len(scores))
    if labels is not None and labels.any():
        edges = np.flatnonzero(np.diff(np.concatenate([[0], labels.astype(int), [0]])))
        for start, stop in zip(edges[::2], edges[1::2]):
            axis.axvspan(start - 0.5, stop - 0.5, color="tab:red", alpha=0.2, lw=0,
                         label="ground truth: anomalous" if start == edges[0] else None)
    scores = np.asarray(scores, dtype=np.float64)
    finite = scores[np.isfinite(scores)]
    axis.plot(frames, scores, color="tab:blue", lw=1.2, marker="." if len(finite) < len(scores) else None,
              ms=3, label="anomaly score")
    if len(finite):
        low, high = float(finite.min()), float(finite.max())
        pad = 0.05 * (high - low) if high > low else max(abs(high) * 0.05, 0.5)
        axis.set_ylim(low - pad, high + pad)
    else:
        axis.set_ylim(0.0, 1.0)
        axis.text(0.5, 0.5, "no object detected in any frame", transform=axis.transAxes, ha="center",
                  va="center", color="gray")
    if len(finite) < len(scores):
        axis.plot([], [], " ", label=f"gaps: no object ({len(scores) - len(finite)} frames)")
    axis.set_xlim(-0.5, max(len(scores) - 0.5, 0.5))
    axis.set_xlabel(f"frame ({fps:g} fps)" if fps else "frame")
    axis.set_ylabel("score (max over objects)")
    axis.set_title(title)
    axis.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
