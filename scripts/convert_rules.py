"""The rule engine of ``polyvision convert`` (``polyvision/scripts/convert.py``), shared by every
system: a release's state dict is read safely (``read_release_state_dict``), each key is matched
to the longest ``Rule`` whose source prefix it starts with (``match_rules``), the rules are
applied against our model's state dict with every shape checked (``map_state_dict``), the
result is written atomically (``save_atomically``) and reported as one table (``print_report``).
"""
from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyvision.errors import ConfigError, WeightsError

WRAPPER_KEYS = ("model_state_dict", "state_dict")  # unwrapped in this order when present
PARALLEL_PREFIX = "module."  # DataParallel


# --------------------------------------------------------------------------- rule machinery
@dataclass(frozen=True)
class Rule:
    """One release module (or single key) ``source`` and what becomes of its tensors.

    ``action``: ``renamed`` (``source`` prefix -> ``target`` prefix, tensor as it is),
    ``reshaped`` (single key, ``transform`` applied; ``source_shape`` gives the release shape
    from ours), ``folded`` (a conv bias our layer does not have, subtracted from the following
    BatchNorm's ``running_mean`` key ``target``: ``BN(Wx + b)`` with mean ``μ`` equals ``BN(Wx)``
    with mean ``μ - b``, in eval and train mode alike), ``stacked`` (single key: row ``index``
    of our tensor ``target``, e.g. per-level scalars we keep in one vector; every row must be
    given) or ``dropped`` (``target`` None).
    """

    source: str
    target: str | None
    action: str
    why: str = ""
    transform: Callable[[Any], Any] | None = None
    source_shape: Callable[[tuple[int, ...]], tuple[int, ...]] | None = None
    index: int | None = None

    def matches(self, key: str) -> bool:
        return key == self.source or key.startswith(self.source + ".")

    def target_key(self, key: str) -> str:
        return self.target + key[len(self.source):]


# --------------------------------------------------------------------------- reading
def read_release_state_dict(path: Path) -> dict[str, Any]:
    """The plain ``name -> tensor`` dict of a released file: safe loading, wrapper unwrapped,
    the DataParallel prefix stripped."""
    import torch

    from polyvision.models.factory import read_checkpoint

    loaded = read_checkpoint(path)  # weights_only=True; refuses pickled code in one line
    if isinstance(loaded, dict):
        for key in WRAPPER_KEYS:
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not loaded:
        raise WeightsError(f"{path}: not a state dict (holds {type(loaded).__name__}{' (empty)' if loaded == {} else ''})")
    state = {}
    for key, value in loaded.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{path}: not a state dict: '{key}' holds a {type(value).__name__}, not a tensor")
        state[str(key)] = value
    return strip_parallel_prefix(state)


def strip_parallel_prefix(state: dict[str, Any]) -> dict[str, Any]:
    """Names without DataParallel's ``module.`` prefix."""
    return {(key[len(PARALLEL_PREFIX):] if key.startswith(PARALLEL_PREFIX) else key): value for key, value in state.items()}


# --------------------------------------------------------------------------- mapping
@dataclass
class Mapping:
    """What a conversion did: ``weights`` (our key -> tensor), per rule the keys it took,
    and ``missing`` (our keys not in the file, with why)."""

    weights: dict[str, Any]
    used: dict[Rule, list[str]]
    missing: dict[str, list[str]]


def match_rules(state: Any, rules: list[Any], path: Path | str, *, system: str = "this system",
                table: str = "its rules", not_release: str | None = None) -> dict[str, Any]:
    """Each key's rule (the longest matching source); refuses keys no rule matches. ``system``
    and ``table`` name the model and the rule table in messages, ``not_release`` what the file
    then is not (default: the ``system`` release). Any rule with ``matches`` and ``source``."""
    chosen, unmatched = {}, []
    for key in state:
        candidates = [rule for rule in rules if rule.matches(key)]
        if not candidates:
            unmatched.append(key)
            continue
        chosen[key] = max(candidates, key=lambda rule: len(rule.source))
    if unmatched:
        first = unmatched[0]
        raise WeightsError(f"{path}: {len(unmatched)} keys match no rule of the {system} mapping (first: '{first}' "
                           f"{tuple(state[first].shape)}); {not_release or f'not the {system} release'}, "
                           f"or correct {table}")
    return chosen


def map_state_dict(state: dict[str, Any], ours: dict[str, Any], rules: list[Rule], not_in_release: dict[str, str],
                   zeroed: tuple[str, ...], path: Path, *, system: str = "this system", table: str = "its rules",
                   model: str | None = None) -> Mapping:
    """Apply ``rules`` to the release ``state`` against our model's ``ours`` state dict.
    ``system``/``table`` name the release and the rule table in messages, ``model`` our model
    (default ``system``)."""
    import torch

    model = model or system
    chosen = match_rules(state, rules, path, system=system, table=table)
    weights: dict[str, Any] = {}
    used: dict[Rule, list[str]] = {}
    folds: list[tuple[str, str]] = []
    rows: dict[str, dict[int, Any]] = {}
    for key, rule in chosen.items():
        used.setdefault(rule, []).append(key)
        if rule.action == "dropped":
            continue
        target = rule.target if rule.action in ("reshaped", "folded", "stacked") else rule.target_key(key)
        if target not in ours:
            raise WeightsError(f"{path}: '{key}' maps to '{target}', which {model} does not have (a different "
                               f"architecture, or correct {table})")
        tensor, expected = state[key], tuple(ours[target].shape)
        if rule.action == "stacked":
            expected = expected[1:] if expected and rule.index is not None and rule.index < expected[0] else None
        need = rule.source_shape(expected) if rule.source_shape and expected is not None else expected
        if tuple(tensor.shape) != need:
            wanted = f"needs {need}" if need is not None else f"has no row {rule.index}"
            raise WeightsError(f"{path}: '{key}' has shape {tuple(tensor.shape)}, but {model}'s '{target}' {wanted}: "
                               f"not the weights of this model")
        if rule.action == "folded":
            folds.append((key, target))
            continue
        if rule.action == "stacked":
            if rule.index in rows.setdefault(target, {}):
                raise WeightsError(f"{path}: '{key}' and another key both map to row {rule.index} of '{target}' "
                                   f"(correct {table})")
            rows[target][rule.index] = tensor
            continue
        if target in weights:
            raise WeightsError(f"{path}: '{key}' and another key both map to '{target}' (correct {table})")
        value = rule.transform(tensor) if rule.transform else tensor
        weights[target] = value.to(ours[target].dtype)  # load_state_dict copies it
    for target, given in rows.items():
        absent_rows = [index for index in range(ours[target].shape[0]) if index not in given]
        if absent_rows:
            raise WeightsError(f"{path}: row {absent_rows[0]} of {model}'s '{target}' is not in the file; not the "
                               f"{system} release, or correct {table}")
        weights[target] = torch.stack([given[index] for index in range(len(given))]).to(ours[target].dtype)
    for key, target in folds:
        if target not in weights:
            raise WeightsError(f"{path}: '{key}' is a conv bias folded into '{target}', which the file does not give")
        weights[target] = weights[target] - state[key].to(weights[target].dtype)
    missing: dict[str, list[str]] = {}
    for key in ours:
        if key in weights:
            continue
        why = next((reason for pattern, reason in not_in_release.items() if re.search(pattern, key)), None)
        if why is None:
            absent = [k for k in ours if k not in weights and not any(re.search(p, k) for p in not_in_release)]
            raise WeightsError(f"{path}: {len(absent)} weights of {model} are not in the file (first: '{absent[0]}'); "
                               f"not the {system} release, or correct {table}")
        missing.setdefault(why, []).append(key)
        weights[key] = torch.zeros_like(ours[key]) if any(re.search(p, key) for p in zeroed) else ours[key]
    return Mapping(weights, used, missing)


# --------------------------------------------------------------------------- output
def save_atomically(checkpoint: dict[str, Any], out: Path) -> None:
    import torch

    handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(handle)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp's 0600 -> what open() would have given
        torch.save(checkpoint, temporary)
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def print_report(mapping: Mapping, source: Path, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{source.name} -> {out.name}")
    for column in ("release", "polyvision", "keys", "action", "why"):
        table.add_column(column, justify="right" if column == "keys" else "left")
    groups: dict[tuple[str, str], list[tuple[Rule, list[str]]]] = {}
    for rule, keys in mapping.used.items():  # one row per (action, why): the first rule and how many like it
        groups.setdefault((rule.action, rule.why), []).append((rule, keys))
    for (action, why), members in groups.items():
        first = members[0][0]
        more = f" (+{len(members) - 1} like it)" if len(members) > 1 else ""
        table.add_row(first.source + more, first.target or "-", str(sum(len(keys) for _, keys in members)), action, why)
    for why, keys in mapping.missing.items():
        common = os.path.commonprefix(keys).rstrip(".") or keys[0]
        table.add_row("-", f"{common}…" if len(keys) > 1 else keys[0], str(len(keys)), "missing in the file", why)
    console = Console(width=200)
    console.print(table)
    counts = {action: sum(len(k) for r, k in mapping.used.items() if r.action == action)
              for action in ("renamed", "reshaped", "folded", "stacked", "dropped")}
    mapped = counts["renamed"] + counts["reshaped"] + counts["folded"] + counts["stacked"]
    stacked = f", {counts['stacked']} stacked" if counts["stacked"] else ""
    console.print(f"{mapped} keys mapped ({counts['renamed']} renamed, {counts['reshaped']} reshaped, "
                  f"{counts['folded']} folded{stacked}), {counts['dropped']} dropped, "
                  f"{sum(len(k) for k in mapping.missing.values())} missing in the file; wrote {out}")


# --------------------------------------------------------------------------- known differences
@dataclass(frozen=True)
class Difference:
    """Where our model computes something other than the release's, with the release code;
    ``applies(head, facts)`` says whether it does for the model being converted."""

    name: str
    ours: str
    release: str
    where: str
    applies: Callable[[Any, dict[str, Any]], bool]


def always_applies(head: Any, facts: dict[str, Any]) -> bool:  # noqa: ARG001 - a Difference that always applies
    return True


def check_differences(known: list[Difference], head: Any, facts: dict[str, Any], accept: Any, *, system: str,
                      where: str) -> list[Difference]:
    """The ``known`` differences that apply to ``head``; refuses (one error listing each with
    the release code) those not in ``accept`` (``True``: all, or a collection of names)."""
    names = [difference.name for difference in known]
    applying = [difference for difference in known if difference.applies(head, facts)]
    accepted = set(names) if accept is True else set(accept or ())
    unknown = accepted - set(names)
    if unknown:
        raise ConfigError(f"convert {system.lower()}: unknown difference '{min(unknown)}' (known: {', '.join(names)})")
    refused = [difference for difference in applying if difference.name not in accepted]
    if refused:
        lines = "; ".join(f"{d.name}: ours {d.ours}, release {d.release} ({d.where})" for d in refused)
        raise WeightsError(f"{where}: our {system} computes something other than the release in {len(refused)} "
                           f"way(s) ({', '.join(d.name for d in refused)}); accept them to convert anyway "
                           f"(accept_differences / --accept-differences), the checkpoint records them. {lines}")
    return applying


def conversion_paths(source: Path, out: Path, force: bool) -> tuple[Path, Path]:
    """``(source, out)`` of a conversion command, refused in one line each: a missing source,
    a missing output folder, an existing output without ``force``."""
    source, out = Path(source).expanduser(), Path(out).expanduser()
    if not source.is_file():
        raise WeightsError(f"{source}: file not found")
    if not out.parent.is_dir():
        raise WeightsError(f"{out}: its folder {out.parent} does not exist")
    if out.exists() and not force:
        raise WeightsError(f"{out}: exists (pass --force to replace it)")
    return source, out


def add_difference_arguments(parser: Any, names: tuple[str, ...]) -> None:
    """``--accept-differences [NAME ...]`` (``names``: the system's known differences) and ``--force``."""
    parser.add_argument("--accept-differences", nargs="*", default=None, metavar="NAME",
                        help=f"convert although our model differs from the release (all, or some of: {', '.join(names)})")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")


def accepted_differences(args: Any) -> bool | list[str]:
    """What ``--accept-differences`` accepts: nothing when absent, all when given bare."""
    return False if args.accept_differences is None else (args.accept_differences or True)


def difference_lines(differences: list[Difference]) -> list[str]:
    return [f"ACCEPTED DIFFERENCE {d.name}: ours {d.ours}; release {d.release} ({d.where})" for d in differences]

