"""A callback that SIGKILLs its own process once training reaches a given step (the resume
test's way of killing a run mid-epoch at a known point)."""
from __future__ import annotations

import os
import signal

from pytorch_lightning import Callback


class KillAtStep(Callback):
    def __init__(self, step: int):
        self.step = int(step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)
