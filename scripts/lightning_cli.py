"""``polyvision fit|validate|test|predict``: LightningCLI with our defaults.

- runs log to TensorBoard and CSV under ``<default_root_dir>/<config name>/version_N``;
- a rich progress bar and a checkpoint callback that keeps the last and best checkpoints;
- ``test`` prints its metrics and saves them as JSON beside the checkpoint;
- ``fit`` and ``test`` report how many bad samples were skipped (``skip_bad_samples``).
"""
from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from jsonargparse import ArgumentError
from pytorch_lightning.cli import LightningCLI, _get_module_type, _InstantiatorFn

from polyvision.errors import ConfigError
from polyvision.models.base import MultiTaskModule

TRAINER_DEFAULTS: dict[str, Any] = {"default_root_dir": "runs"}


class _DropAdverts(logging.Filter):
    """Lightning announces a cloud logging service on every Trainer start; not our users' news."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in str(record.msg)


logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_DropAdverts())
# Lightning's own use of a deprecated torch pytree API; nothing a user can act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def default_callbacks(configured: list, progress_bar: bool = True) -> list:
    """A rich progress bar and a checkpoint callback keeping the last and the newest
    checkpoint, unless the config brings its own of that kind."""
    from pytorch_lightning.callbacks import ModelCheckpoint, ProgressBar, RichProgressBar

    callbacks = list(configured)
    if progress_bar and not any(isinstance(c, ProgressBar) for c in callbacks):
        callbacks.append(RichProgressBar())
    if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
        callbacks.append(ModelCheckpoint(save_last=True, save_top_k=1))
    return callbacks


class TopLevelInstantiator(_InstantiatorFn):
    """Lightning's instantiator hands the top-level config to every instance of the model or
    datamodule type, nested ones included (a ``MultiSourceDataModule``'s children would save
    their parent's hyper-parameters). Apply it to the configured top-level class only."""

    def __call__(self, class_type, *args, applied_instantiation_links: dict, **kwargs):
        self.cli._dump_config()
        top = self.cli.config_dump.get(self.key, {})
        top_path = top.get("class_path") if isinstance(top, dict) else None
        if top_path and top_path != f"{class_type.__module__}.{class_type.__qualname__}":
            return class_type(*args, **kwargs)
        return super().__call__(class_type, *args, applied_instantiation_links=applied_instantiation_links, **kwargs)


class PolyvisionCLI(LightningCLI):
    def __init__(self, args: list[str], run: bool = True):
        super().__init__(
            model_class=MultiTaskModule,
            datamodule_class=pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            trainer_defaults=TRAINER_DEFAULTS,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"exit_on_error": False, **{c: {"exit_on_error": False} for c in ("fit", "validate", "test", "predict")}},
            args=args,
            run=run,
        )

    def _add_instantiators(self) -> None:
        self.parser.add_instantiator(TopLevelInstantiator(cli=self, key="model"), _get_module_type(self._model_class),
                                     subclasses=self.subclass_mode_model)
        self.parser.add_instantiator(TopLevelInstantiator(cli=self, key="data"),
                                     _get_module_type(self._datamodule_class), subclasses=self.subclass_mode_data)

    def run_name(self) -> str:
        config = self.config.get(self.subcommand, {}) if self.subcommand else self.config
        configs = config.get("config") or []
        if configs:
            path = Path(str(configs[-1]))
            return f"{path.parent.name}-{path.stem}" if path.parent.name else path.stem
        return type(self.model).__name__.lower()

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        trainer_config = (self.config_init[self.subcommand] if self.subcommand else self.config_init)["trainer"]
        if trainer_config.get("logger") in (None, True):
            from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

            root = trainer_config.get("default_root_dir") or "runs"
            tensorboard = TensorBoardLogger(save_dir=root, name=self.run_name(), default_hp_metric=False)
            kwargs["logger"] = [tensorboard, CSVLogger(save_dir=tensorboard.log_dir, name="", version="csv")]
        configured = trainer_config.get("callbacks") or []
        kwargs["callbacks"] = default_callbacks(configured if isinstance(configured, list) else [configured],
                                                progress_bar=trainer_config.get("enable_progress_bar") is not False)
        return super().instantiate_trainer(**kwargs)

    def report_skipped(self, stage: str) -> None:
        model = self.model
        if isinstance(model, MultiTaskModule):
            skipped = model.total_skipped(stage)
            if skipped and self.trainer.is_global_zero:
                print(f"skipped {skipped} bad samples during {stage} (see the warnings above for the files)")

    def after_fit(self) -> None:
        self.report_skipped("train")
        callback = self.trainer.checkpoint_callback
        log_dir = self.trainer.log_dir  # a collective under DDP: every rank must ask
        if self.trainer.is_global_zero and callback is not None:
            best = getattr(callback, "best_model_path", "") or getattr(callback, "last_model_path", "")
            print(f"checkpoint: {best}")
            print(f"logs: {log_dir}")

    def after_test(self) -> None:
        self.report_skipped("test")
        log_dir = self.trainer.log_dir  # a collective under DDP: every rank must ask
        if not self.trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in sorted(self.trainer.callback_metrics.items()) if k.startswith("test/")}
        print_metrics_table(metrics)
        ckpt_path = self.config_init[self.subcommand].get("ckpt_path")
        if ckpt_path and Path(str(ckpt_path)).is_file():
            target = Path(str(ckpt_path)).with_suffix(".test-metrics.json")
        else:
            target = Path(log_dir or ".") / "test-metrics.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(metrics, indent=2) + "\n")
        print(f"metrics: {target}")


def print_metrics_table(metrics: dict[str, float]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="test metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}")
    Console().print(table)


def run_lightning(command: str, args: list[str]) -> int:
    import warnings

    # sys.argv must stay as it is: DDP relaunches this command from it on every rank.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    try:
        PolyvisionCLI([command, *args])
    except ArgumentError as error:
        raise ConfigError(f"config: {condense(str(error))}") from None
    return 0


STRUCTURAL = ("Does not validate", "Subtypes:", "Errors:", "Given value", "- Expected a", "Parser key", "Problem with")


def condense(message: str) -> str:
    """jsonargparse explains a bad value over many indented lines; keep the dotted key, the
    offending class_path and the deepest reason, on one line."""
    import re

    keys, class_path, reason, depth = [], None, None, -1
    for line in message.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        key = re.match(r'Parser key "(.+)":', stripped)
        if key:
            keys.append(key.group(1))
            continue
        problem = re.match(r"(?:- )?Problem with given class_path '(.+)':", stripped)
        if problem:
            class_path = problem.group(1)
            continue
        indent = len(line) - len(line.lstrip())
        if not stripped.startswith(STRUCTURAL) and indent > depth:
            reason, depth = stripped.lstrip("- "), indent
    where = ".".join(keys) or "config"
    parts = [where] + ([f"class_path '{class_path}'"] if class_path and class_path.split(".")[-1] not in ("OmniFD",) else [])
    return ": ".join(parts + [reason or message.splitlines()[0]])[:400]
