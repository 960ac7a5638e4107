"""The video Swin's shifted-window attention through ``torch.nn.functional.scaled_dot_product_attention``.

torchvision's ``ShiftedWindowAttention3d`` (``torchvision/models/video/swin_transformer.py``)
forms every window's attention matrix in Python: ``softmax(q k^T + bias + shift mask) v``,
materialising the ``(windows, heads, N, N)`` scores and their softmax for the backward pass.
:class:`SDPAWindowAttention3d` keeps its parameters, buffers and arithmetic (padding to whole
windows, the cyclic shift, the relative-position bias, the -100 mask between regions that the
shift brought together) and hands the attention itself to PyTorch's fused kernel with the bias
and the mask as one additive mask: the memory-efficient kernel on CUDA, a fused CPU kernel
elsewhere. Its state dict is torchvision's, so torchvision and Omnivore weights load unchanged,
and its output equals torchvision's to float rounding (``tests/models/test_window_attention.py``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.video import swin_transformer as tv_swin3d

__all__ = ["SDPAWindowAttention3d", "shift_mask"]


def shift_mask(padded_size: tuple[int, int, int], window: tuple[int, int, int], shift: tuple[int, int, int],
               like: Tensor) -> Tensor:
    """``(windows, N, N)`` additive mask of a shifted partition: 0 between tokens that came
    from the same region before the cyclic shift, -100 (as the Swin papers) between others."""
    regions = like.new_zeros(padded_size)
    count = 0
    bounds = [((0, -w), (-w, -s), (-s, None)) for w, s in zip(window, shift)]
    for t0, t1 in bounds[0]:
        for h0, h1 in bounds[1]:
            for w0, w1 in bounds[2]:
                regions[t0:t1, h0:h1, w0:w1] = count
                count += 1
    t, h, w = (p // k for p, k in zip(padded_size, window))
    regions = regions.view(t, window[0], h, window[1], w, window[2]).permute(0, 2, 4, 1, 3, 5)
    regions = regions.reshape(t * h * w, window[0] * window[1] * window[2])
    different = regions.unsqueeze(1) != regions.unsqueeze(2)
    return torch.zeros_like(different, dtype=like.dtype).masked_fill(different, -100.0)


class SDPAWindowAttention3d(tv_swin3d.ShiftedWindowAttention3d):
    """torchvision's ``ShiftedWindowAttention3d`` with a fused attention kernel (module docstring)."""

    def forward(self, x: Tensor) -> Tensor:
        b, t, h, w, c = x.shape
        # torchvision shrinks the window (and drops the shift) along axes the input is smaller than
        window, shift = tv_swin3d._get_window_and_shift_size(self.shift_size.copy(), [t, h, w], self.window_size.copy())
        bias = self.get_relative_position_bias(window)  # (1, heads, N, N)
        pad = [(-size) % k for size, k in zip((t, h, w), window)]
        x = F.pad(x, (0, 0, 0, pad[2], 0, pad[1], 0, pad[0]))
        padded = (t + pad[0], h + pad[1], w + pad[2])
        shifted = sum(shift) > 0
        if shifted:
            x = torch.roll(x, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
        grid = [p // k for p, k in zip(padded, window)]
        windows, tokens = grid[0] * grid[1] * grid[2], window[0] * window[1] * window[2]
        x = x.view(b, grid[0], window[0], grid[1], window[1], grid[2], window[2], c)
        x = x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(b, windows, tokens, c)

        heads = self.num_heads
        qkv = F.linear(x, self.qkv.weight, self.qkv.bias).view(b, windows, tokens, 3, heads, c // heads)
        # (B, windows * heads, N, d): one mask per (window, head), shared by the batch
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).reshape(3, b, windows * heads, tokens, c // heads).unbind(0)
        mask = bias.expand(windows, heads, tokens, tokens)
        if shifted:
            mask = mask + shift_mask(padded, tuple(window), tuple(shift), x).unsqueeze(1)
        mask = mask.reshape(1, windows * heads, tokens, tokens).to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                             dropout_p=self.attention_dropout if self.training else 0.0)
        out = out.view(b, windows, heads, tokens, c // heads).transpose(2, 3).reshape(b, windows, tokens, c)
        out = F.dropout(F.linear(out, self.proj.weight, self.proj.bias), p=self.dropout, training=self.training)

        out = out.view(b, grid[0], grid[1], grid[2], window[0], window[1], window[2], c)
        out = out.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, *padded, c)
        if shifted:
            out = torch.roll(out, shifts=tuple(shift), dims=(1, 2, 3))
        return out[:, :t, :h, :w].contiguous()
