"""``polyvision fit|validate|test|predict``: LightningCLI with our defaults.

- ``fit`` claims its own run folder ``<default_root_dir>/<config name>/version_N`` (an atomic
  ``mkdir``, so runs started at once never share one) and keeps TensorBoard and CSV logs and
  its checkpoints (``checkpoints/last.ckpt`` and the best) inside it; ``--ckpt_path last``
  resumes this config's newest ``last.ckpt`` in its own run folder;
- ``validate``, ``test`` and ``predict`` create no run folder; with ``--ckpt_path`` the
  checkpoint decides the model (a config whose model contradicts it is refused before any
  data is prepared);
- ``test`` prints one metrics table (a V2C model: one table per task, "V2C completion" and
  "V2C generation", scores x100 as papers print them, then the other metrics) and saves the
  metrics as ``<ckpt stem>.test-metrics.json`` beside the checkpoint (``-2``, ``-3``, ... when
  that exists: another run's file is never replaced);
  a caption model's test captions go beside it as coco-caption result JSON,
  ``<ckpt stem>.test-captions.json`` (``[{"image_id": int, "caption": str}, ...]``, same rule);
  a HybridNet model's test predictions go beside it as ``<ckpt stem>.test-commonsense.json``
  (per test entry ``video_id``, ``caption_index``, the generated ``caption``, ``intention``,
  ``effect``, ``attribute`` and ``completion`` {type: sentence}; same rule);
- ``fit`` and ``test`` report how many bad samples were skipped (``skip_bad_samples``).
"""
from __future__ import annotations

import json
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from jsonargparse import ArgumentError
from pytorch_lightning.callbacks import ModelSummary
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.cli import LightningCLI, SaveConfigCallback, _get_module_type, _InstantiatorFn

from polyvision.errors import ConfigError, WeightsError
from polyvision.models.base import MultiTaskModule
from polyvision.scripts.files import unique_file

TRAINER_DEFAULTS: dict[str, Any] = {"default_root_dir": "runs"}


class _DropNoise(logging.Filter):
    """Lines Lightning prints on every start that tell our users nothing they can act on: an
    advert for a cloud logging service, that our own model summary replaced Lightning's, that
    the training loader is read to count the run's steps."""

    NOISE = ("litlogger", "Skipping setting a default `ModelSummary`", "to estimate number of stepping batches")

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(part in str(record.msg) for part in self.NOISE)


for _name in ("pytorch_lightning.utilities.rank_zero", "pytorch_lightning.trainer.connectors.callback_connector"):
    logging.getLogger(_name).addFilter(_DropNoise())
# Lightning's own use of a deprecated torch pytree API; nothing a user can act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
# A resumed run appends to its own metrics.csv (this Lightning appends; nothing is deleted).
warnings.filterwarnings("ignore", message=r".*Experiment logs directory .* exists and is not empty.*")
# Starting a new run from another run's checkpoint: its own folder is new by design.
warnings.filterwarnings("ignore", message=r".*The dirpath has changed from.*")
# Environment variable through which DDP's relaunched ranks find the run folder rank 0 claimed.
RUN_DIR_ENV = "POLYVISION_RUN_DIR"


def default_callbacks(configured: list, progress_bar: bool = True, checkpoint_dir: str | Path | None = None,
                      checkpoints: bool = True) -> list:
    """A rich progress bar (without Lightning's ``v_num``) and a checkpoint callback keeping the
    last and the newest checkpoint in ``checkpoint_dir``, unless the config brings its own of
    that kind; with ``checkpoints=False`` (validate, test, predict) no checkpoint callback."""
    from pytorch_lightning.callbacks import ModelCheckpoint, ProgressBar, RichProgressBar

    class QuietRichProgressBar(RichProgressBar):
        def get_metrics(self, trainer, pl_module):
            metrics = super().get_metrics(trainer, pl_module)
            metrics.pop("v_num", None)
            return metrics

    callbacks = [c for c in configured if checkpoints or not isinstance(c, ModelCheckpoint)]
    if progress_bar and not any(isinstance(c, ProgressBar) for c in callbacks):
        callbacks.append(QuietRichProgressBar())
    if checkpoints and not any(isinstance(c, ModelSummary) for c in callbacks):
        callbacks.append(ParameterSummary())
    if checkpoints and not any(isinstance(c, ModelCheckpoint) for c in callbacks):
        callbacks.append(ModelCheckpoint(dirpath=None if checkpoint_dir is None else str(checkpoint_dir),
                                         save_last=True, save_top_k=1))
    return callbacks


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic: the bytes go to a temporary file in the
    checkpoint's own folder, are flushed to disk, and only then renamed over the target. A run
    killed mid-write leaves the previous ``last.ckpt`` whole (Lightning's own transaction may
    stage in the system temp folder, and a move across file systems is a copy)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        import torch

        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
        try:
            with open(partial, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)


class ParameterSummary(ModelSummary):
    """The model's top-level modules and their parameter counts. Lightning's summary adds a FLOPs
    column that reads 0 (it counts FLOPs only for an ``example_input_array``); FLOPs and speed
    are what ``polyvision benchmark`` measures."""

    @staticmethod
    def summarize(summary_data, total_parameters: int, trainable_parameters: int, model_size: float,
                  total_training_modes: dict[str, int], total_flops: int = 0, **summarize_kwargs: Any) -> None:
        from pytorch_lightning.utilities.model_summary.model_summary import get_human_readable_count
        from rich.console import Console
        from rich.table import Table

        columns = dict(summary_data)
        table = Table(title="model")
        for name in ("Name", "Type", "Params"):
            table.add_column(name, justify="right" if name == "Params" else "left")
        for row in zip(columns["Name"], columns["Type"], columns["Params"]):
            if row[2] not in ("0", "0  "):  # metric collections: no parameters, nothing to show
                table.add_row(*row)
        frozen = total_parameters - trainable_parameters
        table.caption = (f"{get_human_readable_count(int(total_parameters))} parameters"
                         + (f" ({get_human_readable_count(int(frozen))} frozen)" if frozen else "")
                         + f", {model_size:.1f} MB")
        Console().print(table)


def relaunched_rank() -> bool:
    """Whether this process is a rank DDP relaunched (not the one the user started)."""
    return any(os.environ.get(name, "0") not in ("", "0") for name in ("LOCAL_RANK", "NODE_RANK", "GLOBAL_RANK"))


def version_number(path: Path) -> int | None:
    match = re.fullmatch(r"version_(\d+)", path.name)
    return int(match.group(1)) if match else None


def claim_run_dir(parent: Path) -> Path:
    """Create and return the next free ``parent/version_N``. ``mkdir`` is atomic: of two runs
    started at once, one gets ``version_N`` and the other retries with ``N + 1``."""
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        taken = [n for n in (version_number(p) for p in parent.iterdir()) if n is not None]
        candidate = parent / f"version_{max(taken) + 1 if taken else 0}"
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue


def latest_last_checkpoint(parent: Path) -> Path:
    """The newest ``version_N/checkpoints/last.ckpt`` under ``parent`` (a config's runs)."""
    found = [p for p in parent.glob("version_*/checkpoints/last.ckpt") if version_number(p.parent.parent) is not None]
    if not found:
        raise ConfigError(f"--ckpt_path last: no last.ckpt under {parent}/version_*/checkpoints "
                          "(nothing to resume: train with `polyvision fit` first, or give a checkpoint path)")
    return max(found, key=lambda p: (p.stat().st_mtime, version_number(p.parent.parent)))


def run_dir_of_checkpoint(checkpoint: Path, parent: Path) -> Path | None:
    """The run folder ``parent/version_N`` a checkpoint was saved in, if it is one of them."""
    run = checkpoint.resolve().parent.parent
    return run if run.parent == parent.resolve() and version_number(run) is not None else None


def as_plain(value: Any) -> Any:
    """A parsed config value (jsonargparse Namespaces inside dicts and lists) as plain data."""
    if hasattr(value, "as_dict"):
        return as_plain(value.as_dict())
    if isinstance(value, dict):
        return {k: as_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_plain(v) for v in value]
    return value


def same_class(a: str | None, b: str | None) -> bool:
    if a == b:
        return True
    if not a or not b:
        return False
    try:
        from polyvision.models.layers import import_class

        return import_class(a, "model") is import_class(b, "model")
    except Exception:  # noqa: BLE001 - an unimportable name differs from any other
        return False


def checkpoint_conflicts(config_model: dict[str, Any], class_path: str, hparams: dict[str, Any]) -> list[str]:
    """Where the config's model section contradicts the checkpoint: the model class, the head
    names and classes, the declared inputs (``input_keys``)."""
    problems = []
    configured_class = config_model.get("class_path")
    if not same_class(configured_class, class_path):
        problems.append(f"it holds a {class_path.rsplit('.', 1)[-1]} ({class_path}) but the config's model is "
                        f"{configured_class}")
        return problems
    init_args = config_model.get("init_args") or {}
    config_heads, saved_heads = init_args.get("heads"), hparams.get("heads")
    if isinstance(config_heads, dict) and isinstance(saved_heads, dict):
        if sorted(config_heads) != sorted(saved_heads):
            problems.append(f"its heads are {sorted(saved_heads)} but the config's are {sorted(config_heads)}")
        else:
            for name in sorted(saved_heads):
                saved = saved_heads[name].get("class_path") if isinstance(saved_heads[name], dict) else None
                configured = config_heads[name].get("class_path") if isinstance(config_heads[name], dict) else None
                if saved and configured and not same_class(saved, configured):
                    problems.append(f"its head '{name}' is {saved} but the config's is {configured}")
    config_inputs, saved_inputs = init_args.get("input_keys"), hparams.get("input_keys")
    if config_inputs is not None and saved_inputs is not None and list(config_inputs) != list(saved_inputs):
        problems.append(f"it reads inputs {list(saved_inputs)} but the config's model reads {list(config_inputs)}")
    return problems


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
        self.checkpoint_spec: dict[str, Any] | None = None  # the model the checkpoint describes
        self.run_dir: Path | None = None
        super().__init__(
            model_class=MultiTaskModule,
            datamodule_class=pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            trainer_defaults=TRAINER_DEFAULTS,
            # validate/test/predict leave no folder behind: only fit saves its config (in its run folder)
            save_config_callback=SaveConfigCallback if args[:1] == ["fit"] else None,
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

    def subconfig(self):
        return self.config[self.subcommand] if self.subcommand else self.config

    def run_name(self) -> str:
        configs = self.subconfig().get("config") or []
        if configs:
            path = Path(str(configs[0]))  # the main config; later ones override parts of it
            return f"{path.parent.name}-{path.stem}" if path.parent.name else path.stem
        class_path = str(self.subconfig().get("model.class_path") or "model")
        return class_path.rsplit(".", 1)[-1].lower()

    def runs_parent(self) -> Path:
        """``<default_root_dir>/<run name>``: where this config's run folders live."""
        root = self.subconfig().get("trainer.default_root_dir") or TRAINER_DEFAULTS["default_root_dir"]
        return Path(str(root)).expanduser() / self.run_name()

    def _parse_ckpt_path(self) -> None:
        """Lightning would merge a checkpoint's hyper-parameters into whatever model the config
        names (and show torch's traceback for a file that is no checkpoint); ours is
        ``before_instantiate_classes``: refuse a contradiction, else build the checkpoint's model."""

    def before_instantiate_classes(self) -> None:
        """Resolve ``--ckpt_path last`` and read the checkpoint before anything is built or any
        data prepared: a file that is no checkpoint, or (validate/test/predict) one whose model
        the config's model section contradicts, stops here in one line."""
        config = self.subconfig()
        ckpt_path = config.get("ckpt_path")
        if ckpt_path is None or str(ckpt_path) == "":
            return
        if str(ckpt_path) == "last":
            ckpt_path = latest_last_checkpoint(self.runs_parent())
            config["ckpt_path"] = str(ckpt_path)
            print(f"resuming from {ckpt_path}" if self.subcommand == "fit" else f"checkpoint: {ckpt_path}")
        elif str(ckpt_path) in ("best", "hpc", "registry") or str(ckpt_path).startswith("registry:"):
            return  # Lightning's own names, resolved by the Trainer
        from polyvision.models.factory import read_checkpoint, upgrade_hyperparameters

        ckpt_path = Path(str(ckpt_path)).expanduser()
        checkpoint = read_checkpoint(ckpt_path)
        hparams = dict(checkpoint.get("hyper_parameters") or {})
        class_path = (checkpoint.get("polyvision") or {}).get("class_path") or hparams.get("_class_path")
        if not class_path or "state_dict" not in checkpoint:
            raise WeightsError(f"{ckpt_path}: not a polyvision checkpoint (no model class or state_dict)")
        if self.subcommand == "fit":
            run = run_dir_of_checkpoint(ckpt_path, self.runs_parent())
            if run is not None:  # resuming one of this config's runs: continue in its folder
                self.run_dir = run
            return
        hparams = upgrade_hyperparameters(class_path, {k: v for k, v in hparams.items() if not k.startswith("_")})
        problems = checkpoint_conflicts(as_plain(config.get("model")) or {}, class_path, hparams)
        if problems:
            raise WeightsError(f"{ckpt_path}: does not match the config's model: {'; '.join(problems)} "
                               "(use the config the checkpoint was trained with)")
        if hparams.get("pretrained"):  # the checkpoint's weights replace the backbone initialisation
            hparams["pretrained"] = None
        if config.get("model.init_args.pretrained") is not None:
            config["model.init_args.pretrained"] = None  # the checkpoint's weights replace it
        self.checkpoint_spec = {"class_path": class_path, "init_args": hparams}

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        if self.checkpoint_spec is not None:
            from polyvision.models.factory import build_from_spec

            # The checkpoint's settings win: the model is the one it describes.
            self.model = build_from_spec(self.checkpoint_spec, str(self.subconfig().get("ckpt_path")))
            self._add_configure_optimizers_method_to_model(self.subcommand)

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        trainer_config = (self.config_init[self.subcommand] if self.subcommand else self.config_init)["trainer"]
        fitting = self.subcommand in (None, "fit")
        run_dir = None
        if trainer_config.get("logger") in (None, True):
            if fitting:
                from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

                # DDP relaunches this command on every rank: they all join the folder rank 0 claimed.
                inherited = os.environ.get(RUN_DIR_ENV) if relaunched_rank() else None
                run_dir = Path(inherited) if inherited else (self.run_dir or claim_run_dir(self.runs_parent()))
                os.environ[RUN_DIR_ENV] = str(run_dir)
                tensorboard = TensorBoardLogger(save_dir=str(run_dir.parent.parent), name=run_dir.parent.name,
                                                version=run_dir.name, default_hp_metric=False)
                kwargs["logger"] = [tensorboard, CSVLogger(save_dir=str(run_dir), name="", version="csv")]
            else:
                kwargs["logger"] = False  # validate/test/predict: no run folder of their own
        if not fitting:
            kwargs["enable_checkpointing"] = False
        elif not trainer_config.get("plugins"):
            kwargs["plugins"] = [AtomicCheckpointIO()]
        configured = trainer_config.get("callbacks") or []
        kwargs["callbacks"] = default_callbacks(configured if isinstance(configured, list) else [configured],
                                                progress_bar=trainer_config.get("enable_progress_bar") is not False,
                                                checkpoint_dir=None if run_dir is None else run_dir / "checkpoints",
                                                checkpoints=fitting)
        return super().instantiate_trainer(**kwargs)

    def test(self, **kwargs: Any) -> None:
        from polyvision.scripts.caption_pictures import attach_caption_results
        from polyvision.scripts.commonsense import attach_commonsense_results

        self.caption_results = attach_caption_results(self.model)  # a captioner's test captions, for after_test
        self.commonsense_results = attach_commonsense_results(self.model)  # HybridNet's test sentences
        self.trainer.test(**{**kwargs, "verbose": False})  # our table (after_test) is the one printed

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
            print("resume with: --ckpt_path last")

    def after_test(self) -> None:
        self.report_skipped("test")
        if not self.trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in sorted(self.trainer.callback_metrics.items()) if k.startswith("test/")}
        from polyvision.scripts.commonsense import commonsense_tables, print_commonsense_tables

        tables, rest = commonsense_tables(metrics)  # V2C: one table per task, the rest flat
        print_commonsense_tables(tables)
        if rest or not tables:
            print_metrics_table(rest)
        ckpt_path = self.subconfig().get("ckpt_path")
        if ckpt_path and Path(str(ckpt_path)).is_file():
            target = Path(str(ckpt_path)).with_suffix(".test-metrics.json")
        else:
            target = self.runs_parent() / "no-checkpoint.test-metrics.json"
        target = unique_file(target)  # never another run's (or an earlier test's) file
        target.write_text(json.dumps(metrics, indent=2) + "\n")
        print(f"metrics: {target}")
        collector = getattr(self, "caption_results", None)
        if collector is not None:
            from polyvision.scripts.caption_pictures import write_caption_results

            for path in write_caption_results(collector, target):
                print(f"captions: {path}  (coco-caption result JSON)")
        collector = getattr(self, "commonsense_results", None)
        if collector is not None:
            from polyvision.scripts.commonsense import write_commonsense_results

            for path in write_commonsense_results(collector, target):
                print(f"predictions: {path}  (caption and commonsense sentences per test entry)")


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
    if command != "fit":  # evaluation restores weights only: the callbacks' saved state is not needed
        warnings.filterwarnings("ignore", message=".*callbacks used to create the checkpoint need to be provided.*")
    try:
        PolyvisionCLI([command, *args])
    except ArgumentError as error:
        configs = config_files(args)
        prefix = f"{configs[-1]}: " if configs else ""
        raise ConfigError(prefix + condense(str(error))) from None
    return 0


def config_files(args: list[str]) -> list[str]:
    """The ``--config`` files named on a command line."""
    files = []
    for index, arg in enumerate(args):
        if arg == "--config" and index + 1 < len(args):
            files.append(args[index + 1])
        elif arg.startswith("--config="):
            files.append(arg.split("=", 1)[1])
    return files


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
    where = ".".join(keys)
    parts = ([where] if where else []) + ([f"class_path '{class_path}'"] if class_path and class_path.split(".")[-1] not in ("OmniFD",) else [])
    return ": ".join(parts + [reason or message.splitlines()[0]])[:400]
