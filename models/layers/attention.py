"""Perceiver-resampler blocks: latent queries read a token sequence.

OmniFD's cross-task interaction module and its temporal head's ``FuseBlock`` use the same
two blocks (``mmpretrain/models/omnifd/module.py``, classes ``Attention`` and
``FeedForward``, in github.com/haotianll/OmniFD), which follow Flamingo's Perceiver
Resampler (Alayrac et al., "Flamingo: a Visual Language Model for Few-Shot Learning",
NeurIPS 2022, Sec. 2.1 and appendix A.1.1).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["LatentCrossAttention", "FeedForward"]


class LatentCrossAttention(nn.Module):
    """Latents attend to ``[tokens, latents]``: queries come from the latents only, keys and
    values from both, so each latent also sees the others. Both inputs are layer-normalised
    first; the projections have no biases, as in the Perceiver Resampler.

    ``key_padding`` (B, N) marks the tokens to keep (True); the latents are always visible.
    """

    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dim_head = heads, dim_head
        self.norm_tokens = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, tokens: Tensor, latents: Tensor, key_padding: Tensor | None = None) -> Tensor:
        tokens, latents = self.norm_tokens(tokens), self.norm_latents(latents)
        batch, num_latents, _ = latents.shape
        context = torch.cat([tokens, latents], dim=1)

        def split(x: Tensor) -> Tensor:
            return x.view(batch, -1, self.heads, self.dim_head).transpose(1, 2)

        q = split(self.to_q(latents))
        k, v = (split(t) for t in self.to_kv(context).chunk(2, dim=-1))
        mask = None
        if key_padding is not None:
            keep = torch.cat([key_padding, key_padding.new_ones(batch, num_latents)], dim=1)
            mask = keep[:, None, None, :]
        out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.to_out(out.transpose(1, 2).reshape(batch, num_latents, -1))


class FeedForward(nn.Sequential):
    """LayerNorm → Linear(dim → dim·mult) → GELU → Linear(→ dim), no biases (the Perceiver
    Resampler's feed-forward; the caller adds the residual)."""

    def __init__(self, dim: int, mult: int):
        super().__init__(nn.LayerNorm(dim), nn.Linear(dim, dim * mult, bias=False), nn.GELU(),
                         nn.Linear(dim * mult, dim, bias=False))
