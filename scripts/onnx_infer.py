"""``polyvision infer --checkpoint model.onnx IMAGE...``: an exported OmniFD image model
(``polyvision export --format onnx``) run through ONNX Runtime on CPU.

Everything comes from the file: the image geometry (resize) and the input dtype from its
``polyvision.*`` metadata, the heads' ``predict`` from their saved specs (the same code as the
eager path, so the JSON lines are the same: label, score, probabilities; forged fraction and
the mask pictures of a spatial head). Images only: a file whose graph also reads clips must be
exported with ``--input image``; video windows, STATE, ACR and the captioners need the
checkpoint (their post-processing is PyTorch code).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from polyvision.errors import DataError


def is_onnx_file(path: Path) -> bool:
    return Path(path).suffix.lower() == ".onnx"


def load_session(path: Path):
    """(ONNX Runtime session, metadata) of an exported image model, or a one-line refusal."""
    from polyvision.scripts.export import read_metadata

    try:
        import onnxruntime
    except ImportError:
        raise DataError(path, "running an ONNX file needs onnxruntime: pip install 'polyvision[export]'") from None
    if not Path(path).is_file():
        raise DataError(path, "file not found")
    try:
        meta = read_metadata(path)
    except Exception as error:  # noqa: BLE001 - a truncated or foreign file
        raise DataError(path, f"not a readable ONNX file ({type(error).__name__})") from None
    if "polyvision.inputs" not in meta:
        raise DataError(path, "not a polyvision export (no polyvision.* metadata): use `polyvision export`")
    if meta.get("polyvision.part") != "heads" or meta.get("polyvision.system") != "OmniFD":
        raise DataError(path, f"infer runs exported OmniFD image models; this file holds a {meta.get('polyvision.system')} "
                        f"{meta.get('polyvision.part')}: run the checkpoint instead")
    inputs = meta["polyvision.inputs"]
    if [item["key"] for item in inputs] != ["image"]:
        raise DataError(path, f"the graph reads {', '.join(item['name'] for item in inputs)}; infer feeds images only "
                        "(export with --input image)")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session, meta


def build_heads(meta: dict[str, Any]) -> dict[str, Any]:
    """The exported heads rebuilt from their specs (for ``predict``; no weights needed)."""
    from polyvision.models.layers import import_class

    heads = {}
    names = {output["head"] for output in meta["polyvision.outputs"]}
    for name, spec in meta["polyvision.heads"].items():
        if name in names:
            heads[name] = import_class(spec["class_path"], f"heads.{name}")(**spec.get("init_args", {}))
    return heads


def run_onnx(path: Path, inputs: list[Path], output_dir: Path, batch_size: int, predictions: list[Path] | None,
             infer: ModuleType) -> tuple[list[dict], list[str]]:
    """``infer.run`` for an exported ONNX file: the same records as the eager path. ``infer`` is
    ``polyvision.scripts.infer``, passed in (it imports this module) for its image reader,
    mask pictures and never-overwriting output names, so both paths write the same files."""
    import numpy as np
    import torch

    from polyvision.datamodules.geometry import prepare_image

    VIDEO_SUFFIXES, mask_pictures, read_image = infer.VIDEO_SUFFIXES, infer.mask_pictures, infer.read_image
    new_predictions_file, unique_stem = infer.new_predictions_file, infer.unique_stem

    session, meta = load_session(path)
    graph_input = meta["polyvision.inputs"][0]
    geometry, source = graph_input["geometry"], graph_input["sources"][0]
    outputs = meta["polyvision.outputs"]
    heads = build_heads(meta)
    print(f"note: {path} through ONNX Runtime (CPU): {meta['polyvision.system']} heads {', '.join(heads)}, "
          f"{graph_input['dtype']} input {geometry.get('size')} from the file's metadata", file=sys.stderr)
    errors: list[str] = []
    loaded = []
    for item in inputs:
        try:
            if item.is_dir() or item.suffix.lower() in VIDEO_SUFFIXES:
                raise DataError(item, "an exported ONNX file runs images; videos need the checkpoint")
            loaded.append((item, read_image(item)))
        except DataError as error:
            errors.append(str(error))
            print(f"error: {error}", file=sys.stderr)
    jsonl_path = new_predictions_file(output_dir, predictions)
    results: list[dict[str, Any]] = []
    used: set[str] = set()
    with jsonl_path.open("w") as jsonl:
        for start in range(0, len(loaded), batch_size):
            chunk = loaded[start:start + batch_size]
            pixels = np.stack([prepare_image(np.asarray(image), geometry).numpy() for _, image in chunk])
            values = session.run([o["name"] for o in outputs], {graph_input["name"]: pixels})
            per_head: dict[str, dict[str, Any]] = {}
            for output, value in zip(outputs, values):
                per_head.setdefault(output["head"], {})[output["key"]] = torch.from_numpy(np.asarray(value))
            batch = {"meta": [{"path": str(p), "original_size": [im.height, im.width]} for p, im in chunk],
                     "source": source}
            predicted = {name: heads[name].predict(head_outputs, batch) for name, head_outputs in per_head.items()}
            for index, (item, image) in enumerate(chunk):
                record: dict[str, Any] = {"path": str(item)}
                record.update({name: rows[index] for name, rows in predicted.items()})
                stem = unique_stem(item, used, output_dir)
                for head_prediction in record.values():
                    if isinstance(head_prediction, dict) and "mask" in head_prediction:
                        head_prediction.update(mask_pictures(image, head_prediction.pop("mask"), output_dir, stem))
                line = json.dumps(record, sort_keys=True)
                print(line)
                jsonl.write(line + "\n")
                results.append(record)
    return results, errors
