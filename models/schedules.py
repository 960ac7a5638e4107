"""Learning-rate schedules a model's ``scheduler`` spec can name.

A ``MultiTaskModule`` builds its scheduler from plain data,
``{"class_path": ..., "init_args": {...}, "interval": "step" | "epoch"}``: any
``torch.optim.lr_scheduler`` class or one of these. A scheduler whose constructor takes
``total_steps`` is given the run's length in optimiser steps
(``Trainer.estimated_stepping_batches``) unless the spec sets it.
"""
from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["EpochStepDecay", "NoamDecay", "WarmupCosine"]


class WarmupCosine(LambdaLR):
    """Linear warm-up from ``warmup_start_factor`` × the rate to the rate over ``warmup_steps``,
    then a half cosine down to ``min_lr`` at ``total_steps``; stepped every optimiser step.

    OmniFD's schedule is ``warmup_start_factor=1e-3``, 2000 warm-up steps, ``min_lr`` 1e-6
    (mmengine ``LinearLR`` then ``CosineAnnealingLR``, OmniFD repository
    ``configs_omnifd/_base_/schedules/default_adamw_50k_lr1e-4.py``).

    Args:
        optimizer: the optimiser whose groups' rates are scheduled (each from its own rate).
        total_steps: optimiser steps of the whole run; the cosine ends there.
        warmup_steps: steps of linear warm-up (capped at ``total_steps``); 0 starts the cosine at once.
        min_lr: the rate the cosine ends at, absolute (not a factor).
        warmup_start_factor: fraction of the rate the warm-up starts from.
    """

    def __init__(self, optimizer: Optimizer, total_steps: int, warmup_steps: int = 0, min_lr: float = 0.0,
                 warmup_start_factor: float = 0.0):
        total_steps = max(1, int(total_steps))
        warmup = min(int(warmup_steps), total_steps)

        def factor_for(base_lr: float):
            floor = min_lr / base_lr

            def factor(step: int) -> float:
                if step < warmup:
                    return warmup_start_factor + (1 - warmup_start_factor) * step / warmup
                progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
                return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

            return factor

        super().__init__(optimizer, [factor_for(group["lr"]) for group in optimizer.param_groups])


class EpochStepDecay(LambdaLR):
    """The rate times ``factor ** ((epoch - start) // every)`` from epoch ``start`` on (1 before):
    self-critical.pytorch's and the CVLNM release's step decay (``--learning_rate_decay_start 0
    --learning_rate_decay_every 5 --learning_rate_decay_rate 0.8``); step it once per epoch
    (``interval: epoch``). Parameter groups with ``"scheduled": False`` keep their rate (CVLNM's
    linguistic memory, which the release trains with an undecayed optimiser of its own).

    Args:
        optimizer: the optimiser whose groups' rates are scheduled.
        every: epochs between two decays.
        factor: the multiplier of each decay.
        start: the first epoch of the decay.
    """

    def __init__(self, optimizer: Optimizer, every: int = 5, factor: float = 0.8, start: int = 0):
        every, start = max(1, int(every)), int(start)

        def decayed(epoch: int) -> float:
            return float(factor) ** ((epoch - start) // every) if epoch >= start else 1.0

        super().__init__(optimizer, [decayed if group.get("scheduled", True) else (lambda epoch: 1.0)
                                     for group in optimizer.param_groups])


class NoamDecay(LambdaLR):
    """The transformer schedule of Vaswani et al. (NeurIPS 2017, eq. 3) with a free decay
    exponent: the rate times ``dim ** -0.5 * min(s ** -exponent, s * warmup_steps ** -(1 + exponent))``
    at optimiser step ``s`` (counted from 1): linear warm-up to ``warmup_steps``, then decay as
    ``s ** -exponent``. ``exponent`` 0.5 is Noam's; HybridNet and V2C use 0.8 with 5000 warm-up
    steps and ``dim`` 512 (release ``model/transformer/Optim.py`` ``ScheduledOptim``: peak about
    4.9e-5 at step 5000), with the optimiser's own rate 1.

    Args:
        optimizer: the optimiser whose groups' rates are scheduled (each a multiplier).
        dim: the model width of the ``dim ** -0.5`` factor.
        warmup_steps: steps to the peak.
        exponent: the decay exponent after the peak.
    """

    def __init__(self, optimizer: Optimizer, dim: int = 512, warmup_steps: int = 5000, exponent: float = 0.8):
        scale, warmup, exponent = float(dim) ** -0.5, max(1, int(warmup_steps)), float(exponent)

        def factor(step: int) -> float:
            step = step + 1
            return scale * min(step ** -exponent, step * warmup ** -(1.0 + exponent))

        super().__init__(optimizer, factor)
