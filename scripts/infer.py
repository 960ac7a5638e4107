"""``polyvision infer --checkpoint CKPT PATH...``: images or videos in, JSON lines and pictures out.

Works from the checkpoint alone. For every input it prints one JSON line (the heads'
predictions: score and label, forged fraction, ...) and writes them to
``<output-dir>/predictions.jsonl`` (never over an earlier run's file: when it exists, to a new
``predictions-2.jsonl``, ``-3``, ...); a spatial head's mask becomes ``<name>.mask.png`` and
an overlay ``<name>.overlay.png`` (``<name>-2``, ... when pictures of that name exist). Videos (files or frame folders) go to the model's ``predict_video(path,
output_dir, stem)`` (a model that reads clips defines it, writing its own pictures, e.g.
timelines or score curves).

ACR (two-hand reconstruction) checkpoints: each image's record holds ``hands``, one entry per
detected hand (side, score, 3D joints and vertices, MANO pose and shape, camera, 2D joints in
the input square and ``joints_2d_pixels`` in the original image), and ``<name>.hands.png``
shows both meshes over the image; ``--threshold`` sets the centre-map detection threshold
(default: the checkpoint's), ``--skeleton`` adds the joints to pictures. A video gives
``<name>.hands.jsonl`` (a record per frame) and ``<name>.hands.mp4``; ``--smooth`` passes
each hand's pose, shape and camera through a One-Euro filter across frames. A bad input is reported on one line and skipped; the exit
status is then non-zero, and every other input is still processed.

Caption checkpoints (CVLNM): a folder input means its images. Each image's record holds the
caption (``caption``, ``tokens``, ``score``), ``modules`` (per word, the module the controller
weighted most: function, noun, verb or adjective) and ``region_attention`` (per word, the
attention of the visual module weighted most over the regions or grid cells); the caption and
its ``word/module`` pairs are printed, and ``<name>.caption.png`` shows the image with the
caption under it and, per word, that attention: a heat map over the image (grid features),
weighted boxes (region features whose file has ``boxes``), or one strip of region weights per
word. A checkpoint trained on precomputed region features needs them: ``--features DIR``
(``<image stem>.npz`` or ``<image id>.npz``, key ``feat``, as the training data; ``.npy``
too); the image alone has no regions.

HybridNet checkpoints (video commonsense captioning): a folder input means its videos (a folder
without video files is one video, its frames). Each video's record holds, under the head's
name, the generated ``caption`` and the three commonsense sentences ``intention``, ``effect``
and ``attribute`` (each decoded from the video and that caption), printed one per line, and
``commonsense_png``: ``<name>.commonsense.png``, a contact sheet of 8 frames evenly spaced over
the video (4 x 2) with the caption and the sentences under it. A checkpoint trained on decoded
clips reads one clip cut as its test data was (the centre window, the checkpoint's clip
length, frame interval and size); one trained on precomputed features needs them:
``--features DIR``, the V2C folder holding each video's files by its name
(``feats/resnet152/<stem>.npy``, ``i3d_features/msr_vtt-I3D-RGBFeatures-<stem>.npy``,
``audio_features/<stem>.mp3.soundnet.h5``, those the checkpoint reads), rows selected as for
the test split. A missing feature file is reported on one line naming it.
"""
from __future__ import annotations

import argparse
import glob
import json
import sys
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polyvision.errors import ConfigError, DataError
from polyvision.scripts.files import unique_file

if TYPE_CHECKING:
    from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


def read_image(path: Path) -> "Image.Image":
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise DataError(path, "file not found")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise DataError(path, f"unsupported input type '{path.suffix}' (images: {', '.join(sorted(IMAGE_SUFFIXES))})")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(path, f"cannot decode image ({error})") from None


def mask_pictures(image: "Image.Image", mask: list[list[float]], output_dir: Path, stem: str) -> dict[str, str]:
    """Upsample the 1/8-resolution mask to the image, save it and a red overlay."""
    import numpy as np
    import torch
    from PIL import Image

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
    from polyvision.datamodules.geometry import source_for_input

    try:
        return source_for_input(model.input_geometry, "image", str(path))
    except ConfigError as error:
        raise DataError(path, str(error).split(": ", 1)[1]) from None


def unique_stem(path: Path, used: set[str], output_dir: Path) -> str:
    """The name stem of an input's pictures: its own, or ``<stem>-2``, ``-3``, ... when this run
    used it already (two inputs of one name) or ``output_dir`` holds pictures of that stem (an
    earlier run's, which are never overwritten)."""
    stem, counter = path.stem, 1
    while stem in used or any(output_dir.glob(f"{glob.escape(stem)}.*")):
        counter += 1
        stem = f"{path.stem}-{counter}"
    used.add(stem)
    return stem


def new_predictions_file(output_dir: Path, written: list[Path] | None = None) -> Path:
    """``predictions.jsonl``, or ``predictions-2.jsonl``, ``-3``, ... when it exists: created
    exclusively, so neither an earlier run's file nor a concurrent run's is overwritten; its
    path is appended to ``written`` when a list is given."""
    path = unique_file(output_dir / "predictions.jsonl")
    if written is not None:
        written.append(path)
    return path


def configure(model, threshold: float | None, smooth: bool, skeleton: bool) -> None:
    """Hand the model-specific options to a model that takes them (``configure_inference``:
    ACR); for any other model they are ignored with a note."""
    if hasattr(model, "configure_inference"):
        model.configure_inference(threshold=threshold, smooth=smooth, skeleton=skeleton)
        return
    given = [flag for flag, value in (("--threshold", threshold is not None), ("--smooth", smooth),
                                       ("--skeleton", skeleton)) if value]
    if given:
        print(f"note: {', '.join(given)} apply to ACR checkpoints; ignored for {type(model).__name__}", file=sys.stderr)


def run(checkpoint: Path, inputs: list[Path], output_dir: Path, device: str, batch_size: int,
        predictions: list[Path] | None = None, threshold: float | None = None, smooth: bool = False,
        skeleton: bool = False, features: Path | None = None) -> tuple[list[dict], list[str]]:
    """Predict on ``inputs``; the JSON lines go to a new predictions file in ``output_dir``
    (its path is appended to ``predictions`` when a list is given). ``threshold``, ``smooth``
    and ``skeleton``: ACR's options; ``features``: the region-feature folder of a caption
    checkpoint (see the module docstring)."""
    from polyvision.scripts.onnx_infer import is_onnx_file, run_onnx

    if is_onnx_file(checkpoint):  # an exported OmniFD image model, through ONNX Runtime, with this module's I/O
        return run_onnx(checkpoint, inputs, output_dir, batch_size, predictions, infer=sys.modules[__name__])
    import numpy as np
    import torch
    from polyvision.datamodules.geometry import prepare_image
    from polyvision.models.factory import load_model
    from polyvision.scripts.caption_pictures import is_captioner
    from polyvision.scripts.commonsense import is_commonsense

    model = load_model(checkpoint, map_location=device)
    configure(model, threshold, smooth, skeleton)
    if is_captioner(model):
        return run_captions(model, checkpoint, inputs, output_dir, device, batch_size, predictions, features)
    if is_commonsense(model):
        return run_commonsense(model, checkpoint, inputs, output_dir, device, batch_size, predictions, features)
    if features is not None:
        print(f"note: --features applies to caption checkpoints on region features; ignored for {type(model).__name__}",
              file=sys.stderr)
    jsonl_path = new_predictions_file(output_dir, predictions)
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    used: set[str] = set()
    loaded: list[tuple[Path, Any]] = []
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
    with jsonl_path.open("w") as jsonl, torch.no_grad():
        for path in videos:
            try:
                with torch.enable_grad():  # a model may need gradients at test time (STATE); it decides
                    record = {"path": str(path), **model.predict_video(path, output_dir, unique_stem(path, used, output_dir))}
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
            pixels = [np.asarray(image) for _, image in chunk]
            prepared = [prepare_image(rgb, geometry, return_affine=True) for rgb in pixels]
            batch = {
                "image": torch.stack([tensor for tensor, _ in prepared]).to(device),
                "meta": [{"path": str(path), "original_size": [image.height, image.width]} for path, image in chunk],
                "source": source,
            }
            for record, (path, image), rgb, (_, affine) in zip(model.predict_step(batch, 0), chunk, pixels, prepared):
                stem = unique_stem(path, used, output_dir)
                for head_prediction in record.values():
                    if isinstance(head_prediction, dict) and "mask" in head_prediction:
                        head_prediction.update(mask_pictures(image, head_prediction.pop("mask"), output_dir, stem))
                if hasattr(model, "image_record"):  # a model that draws its own pictures (ACR's meshes)
                    record = model.image_record(record, rgb, affine, output_dir, stem)
                line = json.dumps(record, sort_keys=True)
                print(line)
                jsonl.write(line + "\n")
                results.append(record)
    return results, errors


def folder_contents(inputs: list[Path], suffixes: Collection[str], empty_folder_is_input: bool = False) -> list[Path]:
    """Inputs with each folder replaced by its files of ``suffixes`` (sorted by name); with
    ``empty_folder_is_input`` a folder holding none is kept as one input (a folder of frames)."""
    expanded: list[Path] = []
    for path in inputs:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes and p.is_file())
            expanded += files or ([path] if empty_folder_is_input else [])
        else:
            expanded.append(path)
    return expanded


def image_inputs(inputs: list[Path]) -> list[Path]:
    """Inputs with each folder replaced by its images (sorted by name)."""
    return folder_contents(inputs, IMAGE_SUFFIXES)


def run_captions(model, checkpoint: Path, inputs: list[Path], output_dir: Path, device: str, batch_size: int,
                 predictions: list[Path] | None, features: Path | None) -> tuple[list[dict], list[str]]:
    """``run`` for caption models (module docstring)."""
    import numpy as np
    import torch
    from polyvision.datamodules.geometry import prepare_image
    from polyvision.scripts.caption_pictures import (
        caption_geometry,
        caption_of,
        caption_picture,
        load_regions,
        region_batch,
        words_line,
    )

    found = caption_geometry(model)
    if found is None:
        raise DataError(checkpoint, "the checkpoint records no caption input geometry (it was saved without a "
                        "datamodule), so it cannot say what to read from an image")
    source, geometry = found
    regions_input = geometry["input"] == "regions"
    if regions_input and features is None:
        raise DataError(checkpoint, "this caption model reads precomputed region features, which the image alone "
                        "does not give: add --features DIR (<image stem or id>.npz, key feat, as its training data)")
    if regions_input and not features.is_dir():
        raise DataError(features, "--features: no such folder")
    jsonl_path = new_predictions_file(output_dir, predictions)
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    used: set[str] = set()
    loaded: list[tuple[Path, Any, Any, Any]] = []  # path, image, input (regions or image tensor), boxes
    for path in image_inputs(inputs):
        try:
            image = read_image(path)
            if regions_input:
                regions, boxes = load_regions(features, path, int(geometry.get("feature_dim", 2048)))
                loaded.append((path, image, regions, boxes))
            else:
                loaded.append((path, image, prepare_image(np.asarray(image), geometry), None))
        except DataError as error:
            errors.append(str(error))
            print(f"error: {error}", file=sys.stderr)
    model.to(device).eval()
    with jsonl_path.open("w") as jsonl, torch.no_grad():
        for start in range(0, len(loaded), batch_size):
            chunk = loaded[start:start + batch_size]
            batch: dict[str, Any] = {"meta": [{"path": str(path), "original_size": [image.height, image.width]}
                                              for path, image, _, _ in chunk], "source": source}
            if regions_input:
                batch["regions"], batch["region_mask"] = (t.to(device) for t in region_batch([c[2] for c in chunk]))
            else:
                batch["image"] = torch.stack([c[2] for c in chunk]).to(device)
            for record, (path, image, _, boxes) in zip(model.predict_step(batch, 0), chunk):
                stem = unique_stem(path, used, output_dir)
                named = caption_of(record)
                if named is not None:
                    _, prediction = named
                    picture = caption_picture(image, prediction, output_dir / f"{stem}.caption.png",
                                              geometry["input"], geometry.get("size"), boxes)
                    prediction["caption_png"] = str(picture)
                    print(f"{path}: {prediction['caption']}")
                    print(f"  {words_line(prediction)}")
                jsonl.write(json.dumps(record, sort_keys=True) + "\n")
                results.append(record)
    return results, errors


def video_inputs(inputs: list[Path]) -> list[Path]:
    """Inputs with each folder replaced by its video files (sorted by name); a folder without
    video files is itself a video (a folder of frames)."""
    return folder_contents(inputs, VIDEO_SUFFIXES, empty_folder_is_input=True)


def run_commonsense(model, checkpoint: Path, inputs: list[Path], output_dir: Path, device: str, batch_size: int,
                    predictions: list[Path] | None, features: Path | None) -> tuple[list[dict], list[str]]:
    """``run`` for HybridNet models (module docstring)."""
    import torch
    from polyvision.datamodules.video.reader import VideoReader
    from polyvision.scripts.commonsense import (
        clip_of,
        commonsense_geometry,
        commonsense_of,
        contact_sheet,
        sheet_frames,
        text_lines,
        video_features,
    )

    found = commonsense_geometry(model)
    if found is None:
        raise DataError(checkpoint, "the checkpoint records no video input geometry (it was saved without a "
                        "datamodule), so it cannot say what to read from a video")
    source, geometry = found
    features_input = geometry["input"] == "features"
    if features_input and features is None:
        raise DataError(checkpoint, "this HybridNet model reads precomputed video features, which the video alone "
                        "does not give: add --features DIR, the V2C folder holding each video's feature files by "
                        "its name (feats/resnet152/<stem>.npy, i3d_features/msr_vtt-I3D-RGBFeatures-<stem>.npy, "
                        "audio_features/<stem>.mp3.soundnet.h5)")
    if features_input and not features.is_dir():
        raise DataError(features, "--features: no such folder")
    if not features_input and features is not None:
        print("note: --features is ignored: this HybridNet model reads decoded clips", file=sys.stderr)
    jsonl_path = new_predictions_file(output_dir, predictions)
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    used: set[str] = set()
    loaded: list[tuple[Path, dict[str, Any], tuple]] = []  # path, model inputs, (frame numbers, frames)
    for path in video_inputs(inputs):
        try:
            if not path.exists():
                raise DataError(path, "file not found")
            if path.is_file() and path.suffix.lower() not in VIDEO_SUFFIXES:
                raise DataError(path, f"unsupported input type '{path.suffix}' (videos: "
                                f"{', '.join(sorted(VIDEO_SUFFIXES))}, or a folder of them)")
            name = path.stem if path.is_file() else path.name
            if features_input:
                tensors = video_features(features, name, geometry)
            with VideoReader(path, num_threads=1) as reader:
                if not features_input:
                    tensors = {"video": clip_of(reader, geometry)}
                frames = sheet_frames(reader)
            loaded.append((path, tensors, frames))
        except DataError as error:
            errors.append(str(error))
            print(f"error: {error}", file=sys.stderr)
    model.to(device).eval()
    with jsonl_path.open("w") as jsonl, torch.no_grad():
        for start in range(0, len(loaded), batch_size):
            chunk = loaded[start:start + batch_size]
            batch: dict[str, Any] = {"meta": [{"path": str(path), "video_id": path.stem} for path, _, _ in chunk],
                                     "source": source}
            for key in chunk[0][1]:
                batch[key] = torch.stack([tensors[key] for _, tensors, _ in chunk]).to(device)
            for record, (path, _, frames) in zip(model.predict_step(batch, 0), chunk):
                stem = unique_stem(path, used, output_dir)
                named = commonsense_of(record)
                if named is not None:
                    _, prediction = named
                    picture = contact_sheet(frames[1], prediction, output_dir / f"{stem}.commonsense.png", frames[0])
                    prediction["commonsense_png"] = str(picture)
                    print(f"{path}:")
                    for label, sentence in text_lines(prediction):
                        print(f"  {label + ':':<10} {sentence}")
                jsonl.write(json.dumps(record, sort_keys=True) + "\n")
                results.append(record)
    return results, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="polyvision infer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path,
                        help="a polyvision Lightning checkpoint (.ckpt), or an OmniFD image model exported by "
                             "`polyvision export --format onnx` (.onnx, run through ONNX Runtime on CPU)")
    parser.add_argument("inputs", nargs="+", type=Path, metavar="PATH", help="images or videos to run on")
    parser.add_argument("--output-dir", type=Path, default=Path("inference"),
                        help="where JSON lines and pictures go: predictions.jsonl, or predictions-2.jsonl, -3, ... "
                             "when it exists (an earlier run's file is never overwritten)")
    parser.add_argument("--device", default=None, help="cuda when available, else cpu")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threshold", type=float, default=None,
                        help="ACR: centre-map probability above which a hand is reported (default: the checkpoint's "
                             "detection_threshold, 0.35 for ACR)")
    parser.add_argument("--smooth", action="store_true",
                        help="ACR videos: One-Euro filter over each hand's pose, shape and camera across frames")
    parser.add_argument("--skeleton", action="store_true", help="ACR: draw the 21-joint skeletons over the meshes")
    parser.add_argument("--features", type=Path, default=None,
                        help="caption checkpoints on region features (CVLNM): the folder of each image's features, "
                             "<image stem or id>.npz (key feat; boxes drawn when it has 'boxes') or .npy; "
                             "HybridNet checkpoints on precomputed features: the V2C folder holding each video's "
                             "feature files by its name, feats/resnet152/<stem>.npy, "
                             "i3d_features/msr_vtt-I3D-RGBFeatures-<stem>.npy, audio_features/<stem>.mp3.soundnet.h5")
    args = parser.parse_args(argv)
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    written: list[Path] = []
    results, errors = run(args.checkpoint, args.inputs, args.output_dir, args.device, args.batch_size, written,
                          threshold=args.threshold, smooth=args.smooth, skeleton=args.skeleton, features=args.features)
    where = written[0] if written else args.output_dir / "predictions.jsonl"
    note = " (a new file: an earlier predictions.jsonl is kept)" if where.name != "predictions.jsonl" else ""
    print(f"{len(results)} predictions in {where}{note}" + (f"; {len(errors)} inputs failed" if errors else ""),
          file=sys.stderr)
    return 1 if errors else 0
