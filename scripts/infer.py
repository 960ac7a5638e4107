"""``polyvision infer --checkpoint CKPT PATH...``: images or videos in, JSON lines and pictures out.

Works from the checkpoint alone. For every input it prints one JSON line (the heads'
predictions: score and label, forged fraction, ...) and writes them to
``<output-dir>/predictions.jsonl``; a spatial head's mask becomes ``<name>.mask.png`` and
an overlay ``<name>.overlay.png``. Videos (files or frame folders) go to the model's ``predict_video(path,
output_dir, stem)`` (a model that reads clips defines it, writing its own pictures, e.g.
timelines or score curves). A bad input is reported on one line and skipped; the exit
status is then non-zero, and every other input is still processed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from polyvision.datamodules.geometry import prepare_image, source_for_input
from polyvision.errors import ConfigError, DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


def read_image(path: Path) -> Image.Image:
    if not path.is_file():
        raise DataError(path, "file not found")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise DataError(path, f"unsupported input type '{path.suffix}' (images: {', '.join(sorted(IMAGE_SUFFIXES))})")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(path, f"cannot decode image ({error})") from None


def mask_pictures(image: Image.Image, mask: list[list[float]], output_dir: Path, stem: str) -> dict[str, str]:
    """Upsample the 1/8-resolution mask to the image, save it and a red overlay."""
    low = torch.tensor(mask, dtype=torch.float32)[None, None]
    probability = torch.nn.functional.interpolate(low, size=(image.height, image.width), mode="bilinear",
                                                  align_corners=False)[0, 0].clamp(0, 1).numpy()
    mask_path = output_dir / f"{stem}.mask.png"
    Image.fromarray((probability * 255).round().astype(np.uint8), mode="L").save(mask_path)
    pixels = np.asarray(image, dtype=np.float32)
    alpha = 0.6 * probability[..., None]
    red = np.array([255.0, 0.0, 0.0], dtype=np.float32)
    overlay = (pixels * (1 - alpha) + red * alpha).round().astype(np.uint8)
    overlay_path = output_dir / f"{stem}.overlay.png"
    Image.fromarray(overlay).save(overlay_path)
    return {"mask_png": str(mask_path), "overlay_png": str(overlay_path)}


def image_source(model, path: Path) -> tuple[str, dict[str, Any]]:
    """The source (and its geometry) the model read images from in training: images are
    resized exactly as that source's evaluation pipeline resized them."""
    try:
        return source_for_input(model.input_geometry, "image", str(path))
    except ConfigError as error:
        raise DataError(path, str(error).split(": ", 1)[1]) from None


def unique_stem(path: Path, used: set[str]) -> str:
    stem, counter = path.stem, 1
    while stem in used:
        counter += 1
        stem = f"{path.stem}-{counter}"
    used.add(stem)
    return stem


def run(checkpoint: Path, inputs: list[Path], output_dir: Path, device: str, batch_size: int) -> tuple[list[dict], list[str]]:
    from polyvision.models.factory import load_model

    model = load_model(checkpoint, map_location=device)
    output_dir.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    used: set[str] = set()
    loaded: list[tuple[Path, Image.Image]] = []
    videos: list[Path] = []
    for path in inputs:
        try:
            # A video file, or a folder of frames (UCSD Ped2, Avenue, ShanghaiTech store videos so).
            if (path.suffix.lower() in VIDEO_SUFFIXES and path.is_file()) or path.is_dir():
                if not hasattr(model, "predict_video"):
                    raise DataError(path, f"{type(model).__name__} takes images, not videos")
                videos.append(path)
            else:
                image = read_image(path)
                image_source(model, path)
                loaded.append((path, image))
        except DataError as error:
            errors.append(str(error))
            print(f"error: {error}", file=sys.stderr)
    with (output_dir / "predictions.jsonl").open("w") as jsonl, torch.no_grad():
        for path in videos:
            try:
                with torch.enable_grad():  # a model may need gradients at test time (STATE); it decides
                    record = {"path": str(path), **model.predict_video(path, output_dir, unique_stem(path, used))}
            except DataError as error:
                errors.append(str(error))
                print(f"error: {error}", file=sys.stderr)
                continue
            line = json.dumps(record, sort_keys=True)
            print(line)
            jsonl.write(line + "\n")
            results.append(record)
        source, geometry = image_source(model, checkpoint) if loaded else (None, {})
        for start in range(0, len(loaded), batch_size):
            chunk = loaded[start:start + batch_size]
            batch = {
                "image": torch.stack([prepare_image(np.asarray(image), geometry) for _, image in chunk]).to(device),
                "meta": [{"path": str(path), "original_size": [image.height, image.width]} for path, image in chunk],
                "source": source,
            }
            for record, (path, image) in zip(model.predict_step(batch, 0), chunk):
                stem = unique_stem(path, used)
                for head_prediction in record.values():
                    if isinstance(head_prediction, dict) and "mask" in head_prediction:
                        head_prediction.update(mask_pictures(image, head_prediction.pop("mask"), output_dir, stem))
                line = json.dumps(record, sort_keys=True)
                print(line)
                jsonl.write(line + "\n")
                results.append(record)
    return results, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="polyvision infer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path, help="a polyvision Lightning checkpoint (.ckpt)")
    parser.add_argument("inputs", nargs="+", type=Path, metavar="PATH", help="images or videos to run on")
    parser.add_argument("--output-dir", type=Path, default=Path("inference"), help="where JSON lines and pictures go")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    results, errors = run(args.checkpoint, args.inputs, args.output_dir, args.device, args.batch_size)
    print(f"{len(results)} predictions in {args.output_dir / 'predictions.jsonl'}"
          + (f"; {len(errors)} inputs failed" if errors else ""), file=sys.stderr)
    return 1 if errors else 0
