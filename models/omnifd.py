"""OmniFD: one shared video Swin, a cross-task interaction neck and task heads for face
forgery classification and localization (OmniFD, arXiv 2512.01128; official code:
github.com/haotianll/OmniFD).

``OmniFD`` is a ``MultiTaskModule`` whose defaults are the paper's: a ``swin3d_t`` trunk
whose images enter as one-frame clips, the ``InteractionNeck`` (64 latents × 512, 3
layers), and image classification + spatial heads fed by the ``image`` source.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from polyvision.heads.base import WindowMergingHead
from polyvision.models.base import MultiTaskModule, Neck
from polyvision.models.evaluation import EvaluationProtocol, FullVideoEvaluation
from polyvision.models.layers import FeedForward, LatentCrossAttention, sinusoidal_table


class InteractionNeck(Neck):
    """OmniFD's cross-task interaction module (official code:
    ``mmpretrain/models/omnifd/module.py``, ``Interaction``): every stage's tokens, projected to
    ``latent_channels`` with a learnable stage embedding (plus a sinusoidal temporal
    embedding for clips), are read by ``num_latents`` learnable latents through ``depth``
    cross-attention + feed-forward layers. Returns latents ``(B, latent_channels, num_latents)``.
    A clip sub-batch may carry ``frame_mask`` (B, T) marking real (non-padding) frames.
    """

    def __init__(self, latent_channels: int = 512, num_latents: int = 64, depth: int = 3, heads: int = 8,
                 dim_head: int = 64, ff_mult: int = 4):
        super().__init__()
        self.latent_channels = latent_channels
        self.num_latents = num_latents
        self.latents = nn.Parameter(torch.randn(num_latents, latent_channels))
        self.layers = nn.ModuleList(
            nn.ModuleList([LatentCrossAttention(latent_channels, heads, dim_head), FeedForward(latent_channels, ff_mult)])
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(latent_channels)
        self.proj = nn.ModuleList()
        self.stage_embed: nn.Parameter | None = None

    def bind(self, feature_channels: list[int], feature_strides: list[int]) -> None:
        self.proj = nn.ModuleList(nn.Sequential(nn.Linear(c, self.latent_channels), nn.LayerNorm(self.latent_channels))
                                  for c in feature_channels)
        self.stage_embed = nn.Parameter(torch.zeros(len(feature_channels), self.latent_channels))
        nn.init.trunc_normal_(self.stage_embed, std=0.02)

    def tokens(self, maps: list[Tensor], batch: dict[str, Any]) -> tuple[Tensor, Tensor | None]:
        sequences, keep = [], []
        frame_mask = batch.get("frame_mask")
        for stage, (feature_map, proj) in enumerate(zip(maps, self.proj)):
            x = proj(feature_map.movedim(1, -1))  # (B, [T,] H, W, D)
            x = x + self.stage_embed[stage]
            if x.dim() == 5:
                steps = x.shape[1]
                x = x + sinusoidal_table(steps, self.latent_channels, x.device).to(x.dtype)[None, :, None, None]
                if isinstance(frame_mask, Tensor):
                    valid = nn.functional.interpolate(frame_mask[:, None].float(), size=steps, mode="nearest")[:, 0] > 0
                    x = x * valid[:, :, None, None, None].to(x.dtype)
                    keep.append(valid[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3]).flatten(1))
            sequences.append(x.flatten(1, -2))
        padding = torch.cat(keep, dim=1) if keep else None
        return torch.cat(sequences, dim=1), padding

    def forward(self, maps: list[Tensor], batch: dict[str, Any]) -> Tensor:
        tokens, keep = self.tokens(maps, batch)
        latents = self.latents.to(tokens.dtype).expand(tokens.shape[0], -1, -1)
        for attention, feed_forward in self.layers:
            latents = attention(tokens, latents, keep) + latents
            latents = feed_forward(latents) + latents
        return self.norm(latents).transpose(1, 2)


class OmniFD(MultiTaskModule):
    """OmniFD (arXiv 2512.01128): a ``MultiTaskModule`` with a ``swin3d_t``/``swin3d_s``
    trunk, the ``InteractionNeck`` and forgery heads. The YAML configs in ``configs/omnifd/``
    and ``polyvision.create_model("omnifd_swin_t")`` set the paper's heads, sources, loss
    weights and schedule; see ``MultiTaskModule`` for the arguments.

    OmniFD's own defaults: no weight decay on the trunk's position tables either
    (``paramwise_cfg`` of the official schedules,
    ``configs_omnifd/_base_/schedules/default_adamw_50k_lr1e-4.py``), and the full-video
    evaluation (first-window and whole-video metrics for clips of longer videos)."""

    default_no_decay_keys = ("pos_embed", "absolute_pos_embed", "relative_position_bias_table", "position_embedding")

    def default_evaluation(self) -> list[EvaluationProtocol]:
        return [FullVideoEvaluation()]

    # ------------------------------------------------------------------ video inference
    def predict_video(self, path: str | Path, output_dir: Path, stem: str, batch_size: int = 4) -> dict[str, Any]:
        """Score a whole video: it is cut into the windows the test loop's ``full_video`` protocol
        cuts (the clip geometry of the data the model was trained on, saved in the checkpoint),
        each head's window predictions are merged (mean or max p(fake); segments pooled and
        soft-NMS'd), and a timeline PNG shows the fake segments over time."""
        from polyvision.datamodules.geometry import prepare_clip, source_for_input, video_windows
        from polyvision.datamodules.video.reader import VideoReader
        from polyvision.errors import ConfigError, DataError

        try:
            source, geometry = source_for_input(self.input_geometry, "video", f"{path}")
        except ConfigError as error:
            raise DataError(path, str(error).split(": ", 1)[1]) from None
        heads = [name for name in self.heads_for(source) if isinstance(self.heads[name], WindowMergingHead)]
        if not heads:
            raise DataError(path, "this OmniFD checkpoint has no video heads (it was trained on images)")
        reader = VideoReader(path)
        total, fps = len(reader), float(reader.fps or 25.0)
        windows = video_windows(total, geometry)
        per_head: dict[str, list[dict[str, Any]]] = {name: [] for name in heads}
        self.eval()
        for first in range(0, len(windows), batch_size):
            clips, masks, meta = [], [], []
            for window, (indices, valid) in enumerate(windows[first:first + batch_size], start=first):
                clips.append(prepare_clip(reader.get_frames(indices), geometry))
                masks.append(torch.arange(len(indices)) < valid)
                meta.append({"path": str(path), "frame_indices": indices, "fps": fps, "duration": total / fps,
                             "video_id": str(path), "window": window, "num_windows": len(windows)})
            batch = {"video": torch.stack(clips).to(self.device), "frame_mask": torch.stack(masks).to(self.device),
                     "meta": meta, "source": source}
            with torch.no_grad():
                outputs = self.generate(batch, heads)
            for name in heads:
                per_head[name].extend(self.heads[name].predict(outputs[name], batch))
        reader.close()
        result: dict[str, Any] = {name: self.heads[name].merge_windows(predictions) for name, predictions in per_head.items()}
        timeline = output_dir / f"{stem}.timeline.png"
        draw_timeline(timeline, total / fps, result, per_head)
        result["timeline_png"] = str(timeline)
        result["duration"] = round(total / fps, 4)
        # Which frames each window read (first, last real frame), so a user can check the cut.
        result["window_frames"] = [[indices[0], indices[valid - 1]] for indices, valid in windows]
        return result


def draw_timeline(path: Path, duration: float, merged: dict[str, Any], windows: dict[str, list[dict[str, Any]]]) -> None:
    """Fake segments as bars shaded by score, and each window's p(fake), over the video's time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(10, 2.6))
    title = "fake segments"
    for name, prediction in merged.items():
        if "segments" in prediction:
            for (start, end), score in zip(prediction["segments"], prediction["scores"]):
                if score >= 0.05:
                    axis.axvspan(start, end, ymin=0.0, ymax=score, color="tab:red", alpha=0.35)
        if "probabilities" in prediction:
            per_window = windows[name]
            step = duration / max(len(per_window), 1)
            scores = [p["score"] for p in per_window]
            axis.hlines(scores, [i * step for i in range(len(scores))], [(i + 1) * step for i in range(len(scores))],
                        color="black", linewidth=2, label=f"{name}: p(fake) per window")
            title = f"video p(fake) = {prediction['score']:.3f} ({prediction['label']})"
    axis.set_xlim(0, max(duration, 1e-3))
    axis.set_ylim(0, 1)
    axis.set_xlabel("time (s)")
    axis.set_ylabel("score")
    axis.set_title(title)
    if axis.get_legend_handles_labels()[0]:
        axis.legend(loc="best", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
