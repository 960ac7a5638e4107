"""The ``polyvision`` console script.

``fit|validate|test|predict`` are LightningCLI subcommands (``--config configs/...yaml``);
``infer``, ``synth``, ``leaderboard``, ``benchmark``, ``demo``, ``convert`` and ``export`` are ours.
User errors (bad files, names, configs) print one line and exit non-zero; ``--debug`` shows
the traceback instead.
"""
from __future__ import annotations

import sys
from pathlib import Path

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
# Modules whose SYNTHETIC_WRITERS dict (format name -> writer(root, seed=...)) `synth` offers.
SYNTHETIC_MODULES = (
    "polyvision.datamodules.forgery.synthetic_images",
    "polyvision.datamodules.forgery.synthetic_videos",
    "polyvision.datamodules.anomaly.synthetic",
    "polyvision.datamodules.hands.synthetic",
    "polyvision.datamodules.captions.synthetic",
    "polyvision.datamodules.captions.synthetic_v2c",
)
OUR_COMMANDS = ("infer", "synth", "leaderboard", "benchmark", "demo", "convert", "export")

USAGE = """usage: polyvision [--debug] COMMAND ...

Train, test and compare OmniFD, STATE, ACR, CVLNM and HybridNet through one API.

Lightning commands (see `polyvision COMMAND --help`):
  fit        train:      polyvision fit --config configs/omnifd/synthetic.yaml
  validate   validate a checkpoint on a config's validation data
  test       test:       polyvision test --config CONFIG --ckpt_path CKPT  (prints and saves metrics JSON)
  predict    predict on a config's predict data

Our commands:
  infer        polyvision infer --checkpoint CKPT PATH...   JSON lines + pictures, from the checkpoint alone
                                                            (or from an exported OmniFD .onnx, on images)
  export       polyvision export --checkpoint CKPT --format onnx|torchscript OUT
                                                            one file, checked against eager PyTorch; captioners:
                                                            the encoder only (decoding stays in PyTorch)
  synth        polyvision synth FORMAT DIR                  write a synthetic dataset in a real layout
  leaderboard  polyvision leaderboard ENTRIES.yaml          test checkpoints, write leaderboard.md/.csv/.html
  benchmark    polyvision benchmark decode VIDEO            throughput and decode speed
  demo         polyvision demo [--system SYSTEM]            fit, test, infer and rank on synthetic data (five systems)
  convert      polyvision convert SYSTEM SRC OUT.ckpt       released weights -> a checkpoint (SYSTEM: acr, omnifd,
                                                            hybridnet, cvlnm; 'polyvision convert SYSTEM -h')

  --debug      show full tracebacks instead of one-line errors
"""


def user_error_types() -> tuple[type[BaseException], ...]:
    from polyvision.errors import PolyvisionError

    return (PolyvisionError, FileNotFoundError)


def one_line(error: BaseException) -> str:
    """The user-facing line of an error; DataLoader workers wrap the original in a traceback."""
    text = str(error).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Caught "):
        last = lines[-1]
        return last.split(": ", 1)[1] if ": " in last and last.split(": ", 1)[0].endswith("Error") else last
    return lines[0] if lines else type(error).__name__


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from polyvision import __version__

        print(f"polyvision {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in LIGHTNING_COMMANDS + OUR_COMMANDS:
        print(f"polyvision: unknown command '{command}'\n\n{USAGE}", file=sys.stderr)
        return 2
    try:
        if command in LIGHTNING_COMMANDS:
            precheck_lightning(command, rest)  # fast: before torch and Lightning are imported
            from polyvision.scripts.lightning_cli import run_lightning

            return run_lightning(command, rest)
        if command == "infer":
            from polyvision.scripts.infer import main as infer_main

            return infer_main(rest)
        if command == "synth":
            return synth_main(rest)
        if command == "leaderboard":
            from polyvision.scripts.leaderboard import main as leaderboard_main

            return leaderboard_main(rest)
        if command == "benchmark":
            from polyvision.scripts.benchmark import main as benchmark_main

            return benchmark_main(rest)
        if command == "convert":
            from polyvision.scripts.convert import main as convert_main

            return convert_main(rest)
        if command == "export":
            from polyvision.scripts.export import main as export_main

            return export_main(rest)
        from polyvision.scripts.demo import main as demo_main

        return demo_main(rest)
    except KeyboardInterrupt:
        print("polyvision: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the one place user errors become one line
        cause = user_error(error)
        if debug or cause is None:
            raise
        print(f"error: {one_line(cause)}", file=sys.stderr)
        return 1


# The options LightningCLI's subcommands take (nested keys below these: --trainer.max_steps, ...).
LIGHTNING_OPTIONS = ("config", "print_config", "seed_everything", "trainer", "model", "data", "ckpt_path",
                     "optimizer", "lr_scheduler", "return_predictions", "verbose", "weights_only")


def precheck_lightning(command: str, args: list[str]) -> None:
    """Answer the common mistakes of a Lightning command line in well under a second, before
    torch is imported: an unknown option, a missing or unparsable ``--config`` file (one line
    with the file, the line and column, and the reason)."""
    import yaml

    from polyvision.errors import ConfigError

    for index, arg in enumerate(args):
        if arg in ("-h", "--help") or not arg.startswith("--"):
            continue
        name = arg[2:].split("=", 1)[0].split(".", 1)[0]
        if name not in LIGHTNING_OPTIONS:
            raise ConfigError(f"unrecognized argument '{arg}' (see `polyvision {command} --help`)")
        if name != "config":
            continue
        value = arg.split("=", 1)[1] if "=" in arg else (args[index + 1] if index + 1 < len(args) else None)
        if value is None:
            raise ConfigError("--config: expected a YAML file")
        path = Path(value).expanduser()
        if not path.is_file():
            raise ConfigError(f"{value}: config file not found")
        try:
            yaml.safe_load(path.read_text())
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark or error.context_mark
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            reason = " ".join(part for part in (error.problem, error.context and f"({error.context})") if part)
            raise ConfigError(f"{value}: invalid YAML{where}: {reason or 'cannot parse'}") from None
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise ConfigError(f"{value}: invalid YAML: {str(error).splitlines()[0]}") from None


def user_error(error: BaseException) -> BaseException | None:
    """The user error behind ``error`` (config parsing wraps ours), or None for a bug."""
    chain, seen = [], error
    while seen is not None and len(chain) < 20:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for candidate in chain:
        if isinstance(candidate, user_error_types()):
            return candidate
    # DataLoader workers re-raise our errors with the worker's traceback as the message.
    return error if "polyvision.errors." in str(error) else None


def synth_main(argv: list[str]) -> int:
    import argparse
    import importlib

    writers: dict = {}
    for module in SYNTHETIC_MODULES:
        writers.update(importlib.import_module(module).SYNTHETIC_WRITERS)
    parser = argparse.ArgumentParser(prog="polyvision synth", description="Write a synthetic dataset in a real on-disk layout.")
    parser.add_argument("format", choices=sorted(writers), help="dataset layout to write")
    parser.add_argument("directory", type=Path, help="output directory (the dataset root)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    root = writers[args.format](args.directory, seed=args.seed)
    print(f"wrote synthetic {args.format} dataset to {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
