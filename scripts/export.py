"""``polyvision export --checkpoint CKPT --format onnx|torchscript OUT``: a trained model as one
file that runs without polyvision's Python code, checked against eager PyTorch.

What goes into the graph, per system:

- **OmniFD**: trunk, interaction neck and every head the checkpoint's sources feed, with the
  tensors each head's ``forward`` returns: image / video classification ``logits``, the spatial
  head's ``mask_logits`` (1/8 of the input), the temporal head's raw ``cls_logits``, ``offsets``
  and ``point_mask``. Post-processing stays in Python: softmax/sigmoid, segment decoding and
  Gaussian soft-NMS of the temporal head (its fixed ``points``, ``window_size`` and
  ``num_frames`` are saved in the metadata as ``polyvision.constants``), merging windows of a
  long video. A model that reads images and clips gets one input per kind (``image``,
  ``video``), each with its own dynamic batch axis; ``--input image`` keeps one kind. Clips
  are whole windows: the graph takes no ``frame_mask``, so padded frames of a video's last
  window count as real frames (as a clip without ``frame_mask`` does in PyTorch).
- **STATE**: the encoder/decoder of both branches on a uint8 object cube: the reconstructed
  clip and the predicted flow. The test-time perturbation (a gradient step on the input) and
  the z-scored fusion of the errors stay in PyTorch (the graph has no gradients).
- **ACR**: the raw maps (part segmentation, hand centres, per-cell MANO and camera parameters,
  priors). Peak picking and the MANO layer stay in PyTorch.
- **CVLNM, HybridNet** (captioners): the ENCODER only, backbone + neck, i.e. the features the
  decoders read (CVLNM: the region or grid ``memory``; HybridNet: the neck's ``latents``).
  Decoding stays in PyTorch, because autoregressive beam search with data-dependent lengths
  is not expressible in a static ONNX graph.

Preprocessing is saved IN the file (ONNX ``metadata_props``; TorchScript ``_extra_files``),
every value a JSON string, under ``polyvision.*`` keys (``METADATA_KEYS``). Pixel inputs
are uint8 and normalised inside the graph ((x / 255 - mean) / std, mean and std recorded);
region and frame features are float32 as the datamodules give them.

After writing, the file is run (ONNX Runtime on CPU; ``torch.jit.load``) on the same random
inputs as the eager model, batch 2 (the export traced batch 3, so a batch size baked into
the graph shows), and the largest absolute difference of every output is printed. Above
``TOLERANCE`` * max(1, max |eager output|) the export fails: exit 1, no file. The file is
written to a temporary name beside OUT and linked into place only after the check passes;
an existing OUT is never replaced.

Exporter: ``torch.onnx.export(..., dynamo=False)`` (TorchScript-based, opset 17). Its
``dynamic_axes`` give a dynamic batch axis on every input and output; it handles the video
Swin's window partition and the GRU without extra packages (the ``dynamo=True`` exporter of
torch 2.14 needs ``onnxscript``; it was not used).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMATS = ("onnx", "torchscript")
# fp32 parity: max |exported - eager| <= TOLERANCE * max(1, max |eager|). Single-precision
# rounding is ~6e-8 relative per operation; ONNX Runtime fuses and reorders (LayerNorm,
# attention, GEMM reductions), which leaves differences of 1e-8 to 2e-6 on the outputs of
# these networks (measured, README "Export"). A wrong export (a baked-in batch size, a
# mis-traced branch, a wrong axis) typically differs by 1e-2 or more.
TOLERANCE = 1e-4
EXPORT_BATCH, CHECK_BATCH = 3, 2
OPSET = 17
METADATA_KEYS = ("polyvision.format_version", "polyvision.system", "polyvision.class_path", "polyvision.version",
                 "polyvision.part", "polyvision.inputs", "polyvision.outputs", "polyvision.preprocessing",
                 "polyvision.input_geometry", "polyvision.heads", "polyvision.constants", "polyvision.left_in_python")
FORMAT_VERSION = "1"
CAPTIONERS = ("CVLNM", "HybridNet")
ENCODER_NOTE = ("decoding stays in PyTorch: autoregressive beam search with data-dependent lengths is not "
                "expressible in a static ONNX graph; the file holds the encoder (backbone + neck), the features "
                "the decoders read")
LEFT_IN_PYTHON = {
    "OmniFD": "post-processing stays in Python: softmax/sigmoid of the logits, the temporal head's segment decoding "
              "and soft-NMS (its points are in polyvision.constants), merging a long video's windows",
    "STATE": "the test-time perturbation (a gradient step on the input) and the z-scored error fusion stay in "
             "PyTorch; the file reconstructs clean cubes",
    "ACR": "peak picking on the centre maps and the MANO layer stay in PyTorch; the file gives the raw maps",
    "CVLNM": ENCODER_NOTE,
    "HybridNet": ENCODER_NOTE,
}
# Head outputs that are the input itself (a reconstruction target): not exported.
SKIPPED_OUTPUTS = ("target",)


@dataclass
class GraphInput:
    name: str                  # the graph input's name
    key: str                   # the batch key the model reads it from
    dtype: str                 # uint8 | float32 | bool
    shape: list[Any]           # with "batch" (and "tokens" for dynamic token axes)
    group: str


@dataclass
class Group:
    """Sources that share one input (one backbone pass) and the heads they feed."""
    name: str
    sources: list[str]
    geometry: dict[str, Any]
    inputs: list[GraphInput] = field(default_factory=list)
    heads: list[str] = field(default_factory=list)


@dataclass
class Plan:
    system: str
    part: str                  # heads | encoder
    groups: list[Group]
    outputs: list[dict[str, Any]] = field(default_factory=list)  # name, group, head, key
    constants: dict[str, Any] = field(default_factory=dict)

    @property
    def inputs(self) -> list[GraphInput]:
        return [item for group in self.groups for item in group.inputs]


def system_of(model) -> str:
    return type(model).__name__


def example_shape(key: str, geometry: dict[str, Any], model) -> tuple[list[Any], str]:
    """The per-sample shape (``batch`` first) and dtype of a batch key, from the geometry."""
    from polyvision.errors import ConfigError

    kind = geometry.get("input")
    if key == "image":
        size = geometry.get("size") or geometry.get("input_size")
        if not size:
            raise ConfigError("export: the image geometry records no size")
        return ["batch", 3, int(size[0]), int(size[1])], "uint8"
    if key == "video":
        if "object_pipeline" in geometry:  # STATE: object cubes of 2 * context + 1 frames
            pipeline = geometry["object_pipeline"]
            patch = int(pipeline.get("patch_size", 32))
            return ["batch", 3, 2 * int(pipeline.get("context", 3)) + 1, patch, patch], "uint8"
        size = geometry.get("crop") or geometry.get("size")
        if not size or "clip_len" not in geometry:
            raise ConfigError("export: the clip geometry records no frame size or clip length")
        return ["batch", 3, int(geometry["clip_len"]), int(size[0]), int(size[1])], "uint8"
    if key == "regions":
        return ["batch", "tokens", int(geometry.get("feature_dim", model.backbone.channels))], "float32"
    if key == "region_mask":
        return ["batch", "tokens"], "bool"
    if kind == "features":  # HybridNet's streams: rows x width as the V2C datamodule gives them
        dims, rows = geometry.get("feature_dims") or {}, geometry.get("rows") or {}
        width = int(dims.get(key) or (model.backbone.channels if key == "appearance" else 1024))
        count = rows.get(key)
        count = int(count) if isinstance(count, (int, float)) else (20 if key == "appearance" else 10)
        return ["batch", count, width], "float32"
    raise ConfigError(f"export: cannot tell the shape of input '{key}' ({kind} geometry)")


def make_plan(model, only_input: str | None = None) -> Plan:
    """Which inputs, heads and outputs the exported graph has (module docstring)."""
    from polyvision.errors import ConfigError
    from polyvision.models.base import INPUT_MASK_KEYS

    system = system_of(model)
    geometry = model.input_geometry
    if not geometry:
        raise ConfigError("export: the checkpoint records no input geometry (it was saved without a datamodule), "
                          "so the input shape and preprocessing are unknown")
    encoder = system in CAPTIONERS
    groups: list[Group] = []
    for source, entry in geometry.items():
        kind = str(entry.get("input"))
        key = {"image": "image", "video": "video", "regions": "regions", "features": "appearance"}.get(kind)
        if key is None or key not in model.input_keys:
            raise ConfigError(f"export: source '{source}' reads {kind} inputs, which {system} does not take "
                              f"(it reads {', '.join(model.input_keys)})")
        if only_input is not None and kind != only_input:
            continue
        heads = list(model.heads) if encoder else model.heads_for(source)
        if not heads:
            continue
        shape_entry = {k: v for k, v in entry.items() if k not in ("vocabulary", "cms_vocabulary")}
        same = next((g for g in groups if g.geometry == shape_entry and g.inputs[0].key == key), None)
        if same is not None:
            same.sources.append(source)
            same.heads += [h for h in heads if h not in same.heads]
            continue
        group = Group(name=source, sources=[source], geometry=shape_entry, heads=heads)
        keys = [key]
        mask_key = INPUT_MASK_KEYS.get(key)
        if key == "regions" and model.backbone_takes_mask:
            keys.append(mask_key)
        if kind == "features" and model.neck is not None:
            keys += [m for m in getattr(model.neck, "modalities", []) if m != "appearance"]
        for k in keys:
            shape, dtype = example_shape(k, entry, model)
            group.inputs.append(GraphInput(name=k, key=k, dtype=dtype, shape=shape, group=source))
        groups.append(group)
    if not groups:
        kinds = sorted({str(e.get("input")) for e in geometry.values()})
        raise ConfigError(f"export: no source of this {system} reads {only_input} inputs (it reads {', '.join(kinds)})")
    names = [item.name for group in groups for item in group.inputs]
    for group in groups:  # two groups of one key (clips of two lengths): name inputs by source
        for item in group.inputs:
            if names.count(item.name) > 1:
                item.name = f"{group.name}.{item.key}"
    return Plan(system=system, part="encoder" if encoder else "heads", groups=groups)


def random_inputs(plan: Plan, batch: int, seed: int) -> list[Any]:
    import torch

    generator = torch.Generator().manual_seed(seed)
    tensors = []
    for item in plan.inputs:
        # A dynamic token axis (region features) gets another length in the check than in the export.
        shape = [batch if d == "batch" else (batch + 4 if d == "tokens" else int(d)) for d in item.shape]
        if item.dtype == "uint8":
            tensors.append(torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator))
        elif item.dtype == "bool":
            mask = torch.ones(shape, dtype=torch.bool)
            mask[:, -2:] = False  # padded tokens: the mask must reach the graph
            mask[0] = True
            tensors.append(mask)
        else:
            tensors.append(torch.randn(shape, generator=generator))
    return tensors


def build_wrapper(model, plan: Plan):
    """An ``nn.Module`` taking the plan's inputs positionally and returning its outputs as a tuple."""
    import torch
    from torch import Tensor, nn

    class Exported(nn.Module):
        def __init__(self):
            super().__init__()
            # The parts as submodules (their weights are the graph's parameters); the
            # LightningModule itself stays unregistered, as tracing probes its trainer property.
            object.__setattr__(self, "model", model)
            self.backbone, self.neck, self.heads = model.backbone, model.neck, model.heads

        def run(self, *tensors: Tensor) -> dict[str, Tensor]:
            values: dict[str, Tensor] = {}
            position = 0
            for group in plan.groups:
                batch: dict[str, Any] = {"source": group.sources[0]}
                for item in group.inputs:
                    batch[item.key] = tensors[position]
                    position += 1
                features = self.model.extract_features(batch)
                if plan.part == "encoder":
                    encoded = features["latents"] if isinstance(features.get("latents"), Tensor) else (
                        features["memory"] if isinstance(features.get("memory"), Tensor) else features["maps"][-1])
                    name = "latents" if isinstance(features.get("latents"), Tensor) else "memory"
                    prefix = f"{group.name}/" if len(plan.groups) > 1 else ""
                    values[f"{prefix}{name}"] = encoded
                    if name == "memory" and any(item.key.endswith("_mask") for item in group.inputs):
                        values[f"{prefix}memory_mask"] = features["memory_mask"]  # what the decoder attends over
                    continue
                for head in group.heads:
                    # A head fed by two inputs (two clip geometries) is named by its input too.
                    shared = sum(head in other.heads for other in plan.groups) > 1
                    for key, value in self.model.heads[head](features, batch).items():
                        if isinstance(value, Tensor) and key not in SKIPPED_OUTPUTS:
                            values[f"{group.name}:{head}/{key}" if shared else f"{head}/{key}"] = value
            return values

        def forward(self, *tensors: Tensor):
            values = self.run(*tensors)
            return tuple(values[item["name"]] for item in plan.outputs)

    wrapper = Exported().eval()
    # Which outputs have a batch axis: run two batch sizes; the rest are constants (metadata).
    with torch.no_grad():
        first = wrapper.run(*random_inputs(plan, EXPORT_BATCH, 0))
        second = wrapper.run(*random_inputs(plan, CHECK_BATCH, 1))
    for name, value in first.items():
        other = second[name]
        batched = value.dim() >= 1 and value.shape[0] == EXPORT_BATCH and other.shape[0] == CHECK_BATCH
        if batched:
            head, _, key = name.rpartition(":")[2].partition("/")
            plan.outputs.append({"name": name, "head": head if plan.part == "heads" else None, "key": key or name,
                                 "dtype": str(value.dtype).replace("torch.", ""),
                                 "shape": ["batch", *[int(d) for d in value.shape[1:]]]})
        else:
            plan.constants[name] = value.tolist()
    return wrapper


def metadata(model, plan: Plan) -> dict[str, str]:
    from polyvision.heads.base import module_spec
    from polyvision import __version__

    cls = type(model)
    inputs = [{"name": item.name, "key": item.key, "dtype": item.dtype, "shape": item.shape,
               "sources": next(g.sources for g in plan.groups if g.name == item.group),
               "geometry": next(g.geometry for g in plan.groups if g.name == item.group)} for item in plan.inputs]
    pixels = any(item.dtype == "uint8" for item in plan.inputs)
    preprocessing = {
        "pixel_inputs": "uint8 (B, 3, H, W) or (B, 3, T, H, W), RGB, resized as input_geometry says "
                        "(polyvision.datamodules.geometry.prepare_image / prepare_clip)" if pixels else None,
        "normalized_in_graph": pixels,
        "scale": 1.0 / 255.0 if pixels else None,
        "mean": [float(v) for v in model.pixel_mean.flatten().tolist()],
        "std": [float(v) for v in model.pixel_std.flatten().tolist()],
        "formula": "(x / 255 - mean) / std, per channel, inside the graph" if pixels else "float features as given",
    }
    values = {
        "polyvision.format_version": FORMAT_VERSION,
        "polyvision.system": plan.system,
        "polyvision.class_path": f"{cls.__module__}.{cls.__qualname__}",
        "polyvision.version": __version__,
        "polyvision.part": plan.part,
        "polyvision.inputs": inputs,
        "polyvision.outputs": plan.outputs,
        "polyvision.preprocessing": preprocessing,
        "polyvision.input_geometry": model.input_geometry,
        "polyvision.heads": {name: module_spec(head) for name, head in model.heads.items()},
        "polyvision.constants": plan.constants,
        "polyvision.left_in_python": LEFT_IN_PYTHON.get(plan.system, ""),
    }
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in values.items()}


def dynamic_axes(plan: Plan) -> dict[str, dict[int, str]]:
    axes: dict[str, dict[int, str]] = {}
    for item in plan.inputs:
        axes[item.name] = {i: f"{item.group}_{d}" for i, d in enumerate(item.shape) if isinstance(d, str)}
    for output in plan.outputs:
        axes[output["name"]] = {0: f"{plan.groups[0].name}_batch" if len(plan.groups) == 1 else "batch_out"}
    # Outputs of a multi-input graph take the batch axis of their own input.
    if len(plan.groups) > 1:
        for output in plan.outputs:
            group = next(g for g in plan.groups if output["name"].startswith((f"{g.name}/", f"{g.name}:"))
                         or (":" not in output["name"] and output["head"] in g.heads))
            axes[output["name"]] = {0: f"{group.name}_batch"}
    return axes


def write_onnx(wrapper, plan: Plan, example: list[Any], path: Path, meta: dict[str, str]) -> None:
    import warnings

    import onnx
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, tuple(example), str(path), input_names=[i.name for i in plan.inputs],
                          output_names=[o["name"] for o in plan.outputs], dynamic_axes=dynamic_axes(plan),
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)
    graph = onnx.load(str(path))
    del graph.metadata_props[:]
    for key, value in meta.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(graph, str(path))


def write_torchscript(wrapper, example: list[Any], path: Path, meta: dict[str, str]) -> None:
    import warnings

    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(wrapper, tuple(example), check_trace=False, strict=False)
        torch.jit.save(traced, str(path), _extra_files={key: value.encode() for key, value in meta.items()})


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``polyvision.*`` metadata of an exported file (ONNX or TorchScript), JSON-decoded."""
    path = Path(path)
    if path.suffix.lower() == ".onnx" or is_onnx(path):
        import onnx

        raw = {entry.key: entry.value for entry in onnx.load(str(path), load_external_data=False).metadata_props}
    else:
        import warnings

        import torch

        files = dict.fromkeys(METADATA_KEYS, "")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.load(str(path), map_location="cpu", _extra_files=files)
        raw = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in files.items() if v}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            values[key] = json.loads(value)
        except (json.JSONDecodeError, TypeError):
            values[key] = value
    return values


def is_onnx(path: Path) -> bool:
    """An ONNX protobuf starts with field 1 (ir_version, varint): byte 0x08; a TorchScript file is a zip."""
    try:
        with open(path, "rb") as handle:
            return handle.read(1) == b"\x08"
    except OSError:
        return False


def run_exported(path: Path, fmt: str, plan: Plan, inputs: list[Any]) -> list[Any]:
    import numpy as np
    import torch

    if fmt == "onnx":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = max(1, torch.get_num_threads())
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feeds = {item.name: np.ascontiguousarray(t.numpy()) for item, t in zip(plan.inputs, inputs)}
        return [torch.from_numpy(np.asarray(v)) for v in session.run([o["name"] for o in plan.outputs], feeds)]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
        loaded = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        result = loaded(*inputs)
    return list(result) if isinstance(result, (tuple, list)) else [result]


def parity(wrapper, path: Path, fmt: str, plan: Plan, seed: int = 1) -> list[dict[str, Any]]:
    """Max abs difference per output between the file and eager PyTorch, batch ``CHECK_BATCH``."""
    import torch

    inputs = random_inputs(plan, CHECK_BATCH, seed)
    with torch.no_grad():
        eager = wrapper(*inputs)
    exported = run_exported(path, fmt, plan, inputs)
    rows = []
    for output, reference, value in zip(plan.outputs, eager, exported):
        reference = reference.detach().float()
        value = value.float()
        if tuple(value.shape) != tuple(reference.shape):
            rows.append({"name": output["name"], "shape": list(value.shape), "max_abs_diff": float("inf"),
                         "limit": 0.0, "ok": False, "why": f"shape {tuple(value.shape)}, eager {tuple(reference.shape)}"})
            continue
        diff = float((value - reference).abs().max()) if reference.numel() else 0.0
        limit = TOLERANCE * max(1.0, float(reference.abs().max()) if reference.numel() else 0.0)
        rows.append({"name": output["name"], "shape": list(reference.shape), "max_abs_diff": diff, "limit": limit,
                     "ok": diff <= limit})
    return rows


def needs(module: str, what: str) -> None:
    import importlib.util

    from polyvision.errors import ConfigError

    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"{what} needs the '{module}' package: pip install 'polyvision[export]'")


def export(checkpoint: Path, fmt: str, out: Path, only_input: str | None = None, model=None,
           quiet: bool = False) -> dict[str, Any]:
    """Export ``checkpoint`` (or ``model``) to ``out``; returns ``{"path", "parity", "plan", ...}``.
    Raises ``ConfigError`` on a refused export and ``ExportMismatch`` when the check fails."""
    from polyvision.errors import ConfigError

    say = (lambda *a, **k: None) if quiet else print
    if fmt not in FORMATS:
        raise ConfigError(f"--format: one of {', '.join(FORMATS)}, got '{fmt}'")
    out = Path(out).expanduser()
    if out.exists() or out.is_symlink():
        raise ConfigError(f"{out}: exists; export never overwrites a file (remove it or choose another OUT)")
    if not out.parent.is_dir():
        raise ConfigError(f"{out.parent}: no such folder")
    if fmt == "onnx":
        needs("onnx", "--format onnx")
        needs("onnxruntime", "the ONNX parity check")
    if model is None:
        from polyvision.models.factory import load_model

        model = load_model(checkpoint, map_location="cpu")
    model = model.to("cpu").eval()
    plan = make_plan(model, only_input)
    wrapper = build_wrapper(model, plan)
    if plan.part == "encoder":
        say(f"note: {plan.system}: {ENCODER_NOTE}.")
    elif LEFT_IN_PYTHON.get(plan.system):
        say(f"note: {plan.system}: {LEFT_IN_PYTHON[plan.system]}.")
    meta = metadata(model, plan)
    example = random_inputs(plan, EXPORT_BATCH, 0)
    handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(handle)
    temp = Path(temporary)
    try:
        started = time.perf_counter()
        if fmt == "onnx":
            write_onnx(wrapper, plan, example, temp, meta)
        else:
            write_torchscript(wrapper, example, temp, meta)
        seconds = time.perf_counter() - started
        rows = parity(wrapper, temp, fmt, plan)
        runtime = "ONNX Runtime (CPU)" if fmt == "onnx" else "torch.jit.load"
        say(f"parity: {runtime} vs eager PyTorch, batch {CHECK_BATCH} (exported at batch {EXPORT_BATCH}), "
            f"tolerance {TOLERANCE:g} x max(1, max|eager|):")
        for row in rows:
            flag = "ok" if row["ok"] else "FAIL"
            say(f"  {row['name']:<28} {str(tuple(row['shape'])):<22} max abs diff {row['max_abs_diff']:.3g}"
                f"  (limit {row['limit']:.3g})  {flag}" + (f"  {row['why']}" if row.get("why") else ""))
        failed = [row["name"] for row in rows if not row["ok"]]
        if failed:
            raise ExportMismatch(f"{out}: the exported {fmt} file differs from eager PyTorch above the tolerance "
                                 f"on {', '.join(failed)}; nothing written")
        os.link(temp, out)  # fails if OUT appeared meanwhile: never replaced
    except FileExistsError:
        raise ConfigError(f"{out}: exists; export never overwrites a file (remove it or choose another OUT)") from None
    finally:
        temp.unlink(missing_ok=True)
    inputs = ", ".join(f"{i.name} {i.dtype} {tuple(i.shape)}" for i in plan.inputs)
    say(f"wrote {out} ({fmt}, {out.stat().st_size / 1e6:.1f} MB, {seconds:.1f} s): {plan.system} {plan.part}; "
        f"inputs {inputs}; {len(plan.outputs)} outputs; preprocessing and geometry in its metadata (polyvision.*)")
    return {"path": out, "parity": rows, "plan": plan, "metadata": meta, "wrapper": wrapper}


class ExportMismatch(Exception):
    """The exported file does not reproduce eager PyTorch within the tolerance."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="polyvision export",
        description="Export a checkpoint to ONNX or TorchScript (dynamic batch, preprocessing in the file's metadata), "
                    "then check the file against eager PyTorch. Captioners (CVLNM, HybridNet): the encoder only; "
                    "decoding stays in PyTorch because autoregressive beam search with data-dependent lengths is "
                    "not expressible in a static ONNX graph.")
    parser.add_argument("--checkpoint", required=True, type=Path, help="a polyvision Lightning checkpoint (.ckpt)")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--input", choices=("image", "video", "regions", "features"), default=None,
                        help="export only the sources that read this input (default: all; a model that reads images "
                             "and clips gets one graph input per kind)")
    parser.add_argument("out", type=Path, metavar="OUT", help="the file to write (never replaced if it exists)")
    args = parser.parse_args(argv)
    try:
        export(args.checkpoint, args.format, args.out, args.input)
    except ExportMismatch as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())


# --------------------------------------------------------------------------- benchmark
def add_benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="configs/omnifd/ffpp_swin_t.yaml",
                        help="a config whose model: section is built (random weights: latency does not depend on them)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="time this checkpoint instead of --config")
    parser.add_argument("--size", type=int, default=224, help="image side (the model's image source reads SIZE x SIZE)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op threads of both runtimes (default: torch.get_num_threads(), i.e. OMP_NUM_THREADS)")
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per runtime and batch size (at least 3 runs)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")


def time_calls(call, seconds: float, minimum: int = 3) -> list[float]:
    call()  # warm-up (allocations, ONNX Runtime's first-run planning)
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < minimum or time.perf_counter() - started < seconds:
        begin = time.perf_counter()
        call()
        times.append(time.perf_counter() - begin)
    return times


def benchmark_main(args: argparse.Namespace) -> int:
    """``polyvision benchmark export``: eager PyTorch vs ONNX Runtime (CPU) latency of one OmniFD
    image model, side by side, in one run (same inputs, same thread count)."""
    import platform
    import statistics

    import torch
    import yaml

    from polyvision.datamodules.geometry import image_geometry
    from polyvision.errors import ConfigError

    needs("onnx", "benchmark export")
    needs("onnxruntime", "benchmark export")
    import onnxruntime

    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    if args.checkpoint is not None:
        from polyvision.models.factory import load_model

        model, what = load_model(args.checkpoint, map_location="cpu"), str(args.checkpoint)
    else:
        from polyvision.models.factory import build_from_spec

        path = Path(args.config)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        spec = (yaml.safe_load(path.read_text()) or {}).get("model")
        if not isinstance(spec, dict):
            raise ConfigError(f"{path}: no model: section")
        torch.manual_seed(0)
        spec = {**spec, "init_args": {**(spec.get("init_args") or {}), "pretrained": None,
                                      "input_geometry": {"image": image_geometry(args.size)}}}
        model, what = build_from_spec(spec, str(path)), f"{path} (random weights)"
    model = model.eval()
    with tempfile.TemporaryDirectory(prefix="polyvision-export-bench-") as folder:
        out = Path(folder) / "model.onnx"
        result = export(None, "onnx", out, only_input="image", model=model)
        plan, wrapper = result["plan"], result["wrapper"]
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])
        name = plan.inputs[0].name
        rows = []
        for batch in args.batch_sizes:
            (pixels,) = random_inputs(plan, batch, 0)
            feed = {name: pixels.numpy()}
            with torch.inference_mode():
                eager = time_calls(lambda: wrapper(pixels), args.seconds)
            onnx_times = time_calls(lambda: session.run(None, feed), args.seconds)
            for runtime, times in (("eager PyTorch", eager), ("ONNX Runtime CPU", onnx_times)):
                median = statistics.median(times)
                rows.append({"runtime": runtime, "batch": batch, "runs": len(times), "ms_per_batch": 1000 * median,
                             "ms_per_image": 1000 * median / batch, "images_per_s": batch / median})
        size = out.stat().st_size
    heads = ", ".join(plan.groups[0].heads)
    print(f"\nOmniFD image inference, {what}: heads {heads}, {args.size}x{args.size} uint8 in; "
          f"{threads} intra-op thread(s) each; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores visible; ONNX file {size / 1e6:.1f} MB; "
          "median of the timed runs")
    print(f"{'batch':>5}  {'runtime':<17} {'runs':>5} {'ms/batch':>9} {'ms/image':>9} {'images/s':>9}")
    for row in rows:
        print(f"{row['batch']:>5}  {row['runtime']:<17} {row['runs']:>5} {row['ms_per_batch']:>9.1f} "
              f"{row['ms_per_image']:>9.1f} {row['images_per_s']:>9.2f}")
    for batch in args.batch_sizes:
        eager_ms, onnx_ms = (r["ms_per_image"] for r in rows if r["batch"] == batch)
        print(f"batch {batch}: ONNX Runtime {eager_ms / onnx_ms:.2f}x the speed of eager PyTorch")
    if args.json:
        args.json.write_text(json.dumps({"model": what, "size": args.size, "threads": threads, "rows": rows,
                                         "torch": torch.__version__, "onnxruntime": onnxruntime.__version__}, indent=1))
    return 0
