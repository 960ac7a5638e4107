"""``polyvision benchmark train|test --config CONFIG``: model throughput on a config's data.

Builds the model and datamodule exactly as ``polyvision fit`` would, loads ``--steps``
batches first (so data loading is not timed), then times training steps (forward,
backward, optimizer) or evaluation steps (``test_step``, including anything the system does
at test time, such as STATE's perturbation). Prints step time (min/median), samples/s,
model FLOPs per step and TFLOP/s (from PyTorch's FLOP counter), and peak memory.

``--baseline swin3d_t`` times, in the same run and on the same clips (the config's video
sub-batch, or its images as one-frame clips), a bare torchvision ``swin3d_t`` (full size, two
classes, cross-entropy) at the same precision, so the model's TFLOP/s can be read against
what the bare trunk reaches on that machine. ``--compile`` compiles the model's backbone
and neck (and the baseline) with ``torch.compile`` first.

``--data synthetic`` times the model on generated batches of the config's shape instead of
its dataset, so a paper config runs without the data (``auto``, the default, does so when the
config's hand dataset has no ``root``, e.g. ``configs/acr/interhand.yaml``): for
``HandDataModule`` configs, ``synthetic_hand_batch`` (images at the config's ``input_size``,
one or two hands of the generated hand model about 0.5 m in front of the camera, part
segmentation maps when the config renders them); for ``CaptionDataModule`` configs (e.g.
``configs/cvlnm/coco.yaml``), ``synthetic_caption_batch`` (per image 10 to 100 region features
of the config's width, zero-padded with their mask, as the adaptive bottom-up features, or
images at its ``input_size`` on the grid path; ``captions_per_image`` captions of 8 to 13 words
of the model's vocabulary with their module tags and raw references); for ``V2CDataModule``
configs (``configs/hybridnet/v2c.yaml``, ``v2c_swin.yaml``), ``synthetic_v2c_batch`` (the
precomputed features of the paper's shapes, appearance (B, 20, 2048), motion and audio
(B, 10, 1024), or uint8 clips (B, 3, 16, 224, 224) on the pixel path; a caption (B, 1, 26) and
``cms_per_caption`` strings per commonsense type (B, K, 24) with their references). Data loading
is never timed, so the step times are those of the real data's shapes.

HybridNet's vocabularies come from the data (``vocabulary_size: null``); generated batches have
no data, so the benchmark sizes a head left without sizes with ``V2C_BENCH_VOCABULARY`` (10 000
caption and 10 000 commonsense words, an assumption of the order of MSR-VTT's; set
``--model.init_args.heads.v2c.init_args.vocabulary_size`` / ``cms_vocabulary_size`` for others)
and reports the sizes used (``caption_vocabulary``, ``cms_vocabulary``). A sample is one video
(one caption entry of it: V2C trains and evaluates per entry), so HybridNet's ``samples_per_s``
is also given as ``videos_per_s``. ``test`` times the test step (teacher-forced loss, both V2C
tasks decoded with beam 2: the caption, three generation and three completion sentences, and
the metrics' update) and, in a ``generate`` column, decoding alone as ``polyvision infer``
does it (the caption, then the three commonsense sentences from it, beam 2).

``--decode-videos ROOT`` (pixel configs, ``V2CDataModule`` with ``features: pixels``) adds two
columns measured on real mp4 files: ``decode`` (clips decoded, sampled and resized through the
config's datamodule in this process, ``num_workers: 0``: videos/s of data loading alone) and
``decode + model`` (each timed step loads its batch from the videos, then runs the model step:
videos/s with decoding included, serially). ROOT is a V2C folder (``videos/video<N>.mp4`` and the
annotation files; ``polyvision synth v2c DIR`` writes one under ``DIR/v2c``) or ``synthetic``
(the built-in synthetic V2C, written to the cache on first use). Per-backend decoding speed of
one file is ``polyvision benchmark decode VIDEO``.

Caption models also report ``captions_per_s`` in training (images/s × captions per image, the
rows the decoder is trained on) and, in ``test``, ``samples_per_s`` is images/s of the test
step: teacher-forced loss plus decoding with the head's beam (``beam_size``, 5 in the paper
configs) and the metrics' update. ``--epoch N`` times the training stage of epoch N (CVLNM:
0 cross-entropy with the syntax loss, 37 self-critical training).
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import torch


def synthetic_hand_batch(size: int = 2, side: int = 512, seed: int = 0, part_segmentation: bool = False,
                         source: str = "hands") -> dict[str, Any]:
    """A batch shaped as ``HandDataModule`` gives it, without any data: image float32 (B, 3, S, S)
    in [-1, 1]; slot 0 the right hand (always present), slot 1 the left (present in every
    other sample, those ``interacting``); MANO pose (B, 2, 48) and shape (B, 2, 10); joints of
    the generated hand model about 0.5 m in front of a pinhole camera (B, 3, 3) whose focal
    length puts the hands within 80% of the image, and their projections in [-1, 1]; hand centres; with ``part_segmentation`` the 33-class label maps
    (B, S/2, S/2) int64, hand parts where the hands' joints project."""
    from polyvision.heads.hands import load_hand_models

    generator = torch.Generator().manual_seed(seed)
    hand_valid = torch.zeros(size, 2, dtype=torch.bool)
    hand_valid[:, 0] = True
    hand_valid[::2, 1] = True
    pose = 0.2 * torch.randn(size, 2, 48, generator=generator)
    shape = 0.5 * torch.randn(size, 2, 10, generator=generator)
    models = load_hand_models("generated")
    with torch.no_grad():
        joints = torch.stack([models[s](pose[:, s], shape[:, s]).joints for s in range(2)], 1)
    offset = torch.tensor([[0.06, 0.0, 0.5], [-0.06, 0.0, 0.5]]) + 0.02 * torch.randn(size, 2, 3, generator=generator)
    joints = joints + offset[:, :, None]
    # per sample, the focal length that puts the farthest joint at 80% of the half-width
    rays = (joints[..., :2] / joints[..., 2:]).masked_fill(~hand_valid[..., None, None], 0.0)
    focal = 0.8 * (side / 2) / rays.abs().flatten(1).amax(1).clamp_min(1e-3)
    camera = torch.zeros(size, 3, 3)
    camera[:, 0, 0], camera[:, 1, 1], camera[:, :2, 2], camera[:, 2, 2] = focal, focal, side / 2, 1.0
    joints_2d = rays * (focal / (side / 2))[:, None, None, None]
    center = (joints_2d.amin(2) + joints_2d.amax(2)) / 2
    valid_joints = hand_valid[..., None].expand(size, 2, 21).clone()
    batch: dict[str, Any] = {
        "image": torch.rand(size, 3, side, side, generator=generator) * 2 - 1, "hand_valid": hand_valid,
        "mano_pose": pose, "mano_shape": shape, "mano_trans": offset, "mano_valid": hand_valid.clone(),
        "joints_3d": joints, "joints_3d_valid": valid_joints, "joints_2d": joints_2d,
        "joints_2d_valid": valid_joints.clone(), "center": center, "camera": camera,
        "interacting": hand_valid.all(1),
        "meta": [{"path": f"synthetic{seed}_{i}.png", "dataset": "synthetic"} for i in range(size)],
        "source": source, "num_skipped": torch.tensor(0)}
    if part_segmentation:
        half = side // 2
        labels = torch.zeros(size, half, half, dtype=torch.long)
        cells = ((joints_2d + 1) * 0.5 * half).long().clamp(0, half - 1)
        radius = max(1, half // 64)
        for b, hand in hand_valid.nonzero().tolist():
            for joint in range(21):
                x, y = cells[b, hand, joint].tolist()
                labels[b, max(0, y - radius):y + radius + 1, max(0, x - radius):x + radius + 1] = 1 + 16 * hand + joint % 16
        batch["part_segmentation"] = labels
        batch["part_segmentation_valid"] = torch.ones(size, dtype=torch.bool)
    return batch


def synthetic_caption_batch(size: int, vocabulary_size: int, captions_per_image: int = 5, feature_dim: int = 2048,
                            image_size: list[int] | None = None, seed: int = 0, source: str = "captions",
                            regions: tuple[int, int] = (10, 100), max_length: int = 16) -> dict[str, Any]:
    """A batch shaped as ``CaptionDataModule`` gives it, without any data: ``regions`` float32
    (B, N, feature_dim) with ``region_mask`` (each image 10-100 regions, N the batch's most), or
    ``image`` uint8 (B, 3, H, W) when ``image_size`` is given; ``captions`` int64 (B, K, 16) of
    8-13 words (ids 1..V, 0-padded), ``tags`` (B, K, 16) module classes (-1 on padding) and
    ``meta`` with the raw references (the word ids as words)."""
    generator = torch.Generator().manual_seed(seed)
    captions = torch.randint(1, vocabulary_size + 1, (size, captions_per_image, max_length), generator=generator)
    lengths = torch.randint(8, 14, (size, captions_per_image), generator=generator)
    captions[torch.arange(max_length)[None, None] >= lengths[..., None]] = 0
    tags = torch.randint(0, 4, captions.shape, generator=generator).masked_fill(captions == 0, -1)
    meta = [{"image_id": seed * size + i, "file_name": f"synthetic{seed}_{i}.jpg", "path": f"synthetic{seed}_{i}.jpg",
             "references": [" ".join(str(t) for t in row if t) for row in captions[i].tolist()]} for i in range(size)]
    batch: dict[str, Any] = {"captions": captions, "tags": tags, "meta": meta, "source": source,
                             "num_skipped": torch.tensor(0)}
    if image_size is not None:
        batch["image"] = torch.randint(0, 256, (size, 3, *image_size), generator=generator, dtype=torch.uint8)
        return batch
    counts = torch.randint(regions[0], regions[1] + 1, (size,), generator=generator)
    most = int(counts.max())
    mask = torch.arange(most)[None] < counts[:, None]
    batch["regions"] = torch.randn(size, most, feature_dim, generator=generator).relu() * mask[..., None]
    batch["region_mask"] = mask
    return batch


V2C_BENCH_VOCABULARY = {"vocabulary_size": 10_000, "cms_vocabulary_size": 10_000}


def synthetic_v2c_batch(size: int, vocabulary_size: int, cms_vocabulary_size: int,
                        features: dict[str, tuple[int, int]] | None = None, clip: list[int] | None = None,
                        caption_length: int = 26, cms_length: int = 24, cms_per_caption: int = 1, seed: int = 0,
                        source: str = "v2c") -> dict[str, Any]:
    """A batch shaped as ``V2CDataModule`` gives it, without any data: per modality of
    ``features`` ({name: (rows, width)}, e.g. appearance (20, 2048)) float32 (B, rows, width), or
    ``video`` uint8 (B, 3, T, H, W) when ``clip`` ([T, H, W]) is given; ``captions`` int64
    (B, 1, caption_length) of 8-13 words (ids 1..V, 0-padded); per commonsense type (B, K,
    cms_length) of 3-8 words (ids 1..cms V) with an all-true ``<type>_mask`` (B, K); ``meta`` with
    each sample its own video and the raw references (ids as words) of both V2C tasks."""
    from polyvision.heads.commonsense import CMS_TYPES

    generator = torch.Generator().manual_seed(seed)

    def words(shape: tuple[int, ...], vocabulary: int, length: int, shortest: int, longest: int) -> torch.Tensor:
        ids = torch.randint(1, vocabulary + 1, (*shape, length), generator=generator)
        lengths = torch.randint(shortest, min(longest, length) + 1, shape, generator=generator)
        return ids.masked_fill(torch.arange(length) >= lengths[..., None], 0)

    def raw(row: list[int]) -> str:
        return " ".join(str(t) for t in row if t)

    batch: dict[str, Any] = {"captions": words((size, 1), vocabulary_size, caption_length, 8, 13)}
    for kind in CMS_TYPES:
        batch[kind] = words((size, cms_per_caption), cms_vocabulary_size, cms_length, 3, 8)
        batch[f"{kind}_mask"] = torch.ones(size, cms_per_caption, dtype=torch.bool)
    meta = []
    for i in range(size):
        caption = raw(batch["captions"][i, 0].tolist())
        sentences = {kind: [raw(row) for row in batch[kind][i].tolist()] for kind in CMS_TYPES}
        meta.append({"video_id": seed * size + i, "caption_index": 0, "path": f"synthetic{seed}_{i}.mp4",
                     "references": {"caption": [caption], **sentences,
                                    **{f"generation_{kind}": [f"{caption} {s}" for s in sentences[kind]]
                                       for kind in CMS_TYPES}}})
    batch.update(meta=meta, source=source, num_skipped=torch.tensor(0))
    if clip is not None:
        batch["video"] = torch.randint(0, 256, (size, 3, *clip), generator=generator, dtype=torch.uint8)
    for name, (rows, width) in (features or {}).items():
        batch[name] = torch.randn(size, rows, width, generator=generator)
    return batch


def _option(overrides: list[str], key: str, default: Any) -> Any:
    """The last value of ``--key VALUE`` or ``--key=VALUE`` on the override line, else ``default``."""
    value = default
    for index, arg in enumerate(overrides):
        if arg == f"--{key}" and index + 1 < len(overrides):
            value = overrides[index + 1]
        elif arg.startswith(f"--{key}="):
            value = arg.split("=", 1)[1]
    return None if value in ("null", "None") else value


GENERATED = {"HandDataModule": "hands", "CaptionDataModule": "captions",  # datamodules with generated batches
             "V2CDataModule": "v2c"}


def data_kind(config: str) -> str | None:
    """``hands`` or ``captions`` when the config's datamodule is one generated batches exist for."""
    import yaml

    data = (yaml.safe_load(Path(config).read_text()) or {}).get("data") or {}
    return GENERATED.get(str(data.get("class_path", "")).rsplit(".", 1)[-1])


def is_hand_config(config: str) -> bool:
    """Whether the config's data is a ``HandDataModule``."""
    return data_kind(config) == "hands"


def wants_synthetic(config: str, overrides: list[str]) -> bool:
    """``--data auto``: the config reads a real hand or caption dataset but names no ``root`` (a
    paper config run without its data)."""
    import yaml

    kind = data_kind(config)
    if kind is None:
        return False
    init = ((yaml.safe_load(Path(config).read_text()) or {}).get("data") or {}).get("init_args") or {}
    default = {"hands": "synthetic_interhand", "captions": "synthetic_coco", "v2c": "synthetic_v2c"}[kind]
    dataset = _option(overrides, "data.init_args.dataset", init.get("dataset", default))
    root = _option(overrides, "data.init_args.root", init.get("root"))
    return not str(dataset).startswith("synthetic_") and root is None


def synthetic_overrides(config: str, overrides: list[str]) -> list[str]:
    """Overrides that let the config's datamodule be built without its data (its synthetic
    twin, never prepared: only its settings are read)."""
    import yaml

    if data_kind(config) in ("captions", "v2c"):
        dataset = "synthetic_coco" if data_kind(config) == "captions" else "synthetic_v2c"
        return [*overrides, "--data.init_args.dataset", dataset, "--data.init_args.root", "null"]
    init = ((yaml.safe_load(Path(config).read_text()) or {}).get("data") or {}).get("init_args") or {}
    dataset = str(_option(overrides, "data.init_args.dataset", init.get("dataset", "interhand")))
    return [*overrides, "--data.init_args.dataset", f"synthetic_{dataset.removeprefix('synthetic_')}",
            "--data.init_args.root", "null", "--data.init_args.mano_dir", "null"]


def caption_head(model) -> Any:
    """The model's first caption head, or None."""
    from polyvision.heads.captioning import CaptionHead

    return next((h for h in getattr(model, "heads", {}).values() if isinstance(h, CaptionHead)), None)


def commonsense_head(model) -> Any:
    """The model's first HybridNet head, or None."""
    from polyvision.heads.commonsense import HybridNetHead

    return next((h for h in getattr(model, "heads", {}).values() if isinstance(h, HybridNetHead)), None)


def size_vocabularies(model) -> dict[str, int]:
    """A HybridNet head built without vocabulary sizes (they come from the data) gets
    ``V2C_BENCH_VOCABULARY``'s; returns the sizes the head has."""
    head = commonsense_head(model)
    if head is None:
        return {}
    if head.vocabulary_size is None:
        head.build_caption_words(V2C_BENCH_VOCABULARY["vocabulary_size"])
    if head.cms_vocabulary_size is None:
        head.build_cms_words(V2C_BENCH_VOCABULARY["cms_vocabulary_size"])
    return {"caption_vocabulary": int(head.vocabulary_size), "cms_vocabulary": int(head.cms_vocabulary_size)}


def synthetic_batches(datamodule, count: int, model=None) -> list[Any]:
    """``count`` generated batches of the datamodule's batch size, input size and targets."""
    hp = datamodule.hparams
    if GENERATED.get(type(datamodule).__name__) == "v2c":
        head = commonsense_head(model)
        if head is None:
            raise ValueError("--data synthetic: V2C batches need a model with a HybridNet head")
        from polyvision.datamodules.captions.v2c_features import APPEARANCE_ROWS, REDUCED_ROWS

        pixels = hp.features == "pixels"
        features = None if pixels else {name: (APPEARANCE_ROWS if name == "appearance" else REDUCED_ROWS, spec.dim)
                                        for name, spec in datamodule.feature_specs.items()}
        clip = [int(hp.clip_len), *datamodule.clip_size] if pixels else None
        return [synthetic_v2c_batch(int(hp.batch_size), head.vocabulary_size, head.cms_vocabulary_size, features, clip,
                                    int(hp.max_caption_length), int(hp.max_cms_length), int(hp.cms_per_caption),
                                    seed=index, source=hp.source)
                for index in range(count)]
    if GENERATED.get(type(datamodule).__name__) == "captions":
        head = caption_head(model)
        if head is None:
            raise ValueError("--data synthetic: caption batches need a model with a caption head")
        image_size = None if hp.features == "regions" else list(datamodule.image_size)
        return [synthetic_caption_batch(int(hp.batch_size), head.vocabulary_size, int(hp.captions_per_image),
                                        int(hp.feature_dim), image_size, seed=index, source=hp.source,
                                        regions=(min(10, int(hp.max_regions)), int(hp.max_regions)))
                for index in range(count)]
    return [synthetic_hand_batch(int(hp.batch_size), int(hp.input_size), seed=index,
                                 part_segmentation=bool(hp.part_segmentation), source=hp.source)
            for index in range(count)]


def build(config: str, overrides: list[str]):
    from polyvision.scripts.lightning_cli import PolyvisionCLI

    warnings.filterwarnings("ignore", message=".*self.log.*")
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    cli = PolyvisionCLI(["--config", config, "--trainer.logger", "false", *overrides], run=False)
    return cli.model, cli.datamodule


def sample_count(model, batch: Any) -> int:
    return sum(model.batch_size_of(sub) for _, sub in model.sub_batches(batch))


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list):
        return [to_device(v, device) for v in batch]
    return batch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_flops(step, batch) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step(batch)
    return int(counter.get_total_flops())


def clips_of(model, batch: Any) -> torch.Tensor:
    """The clips (B, 3, T, H, W) of a batch: its video sub-batch, else its images as one-frame clips."""
    subs = [sub for _, sub in model.sub_batches(batch)]
    for key in ("video", "image"):
        for sub in subs:
            if isinstance(sub.get(key), torch.Tensor):
                x = sub[key]
                return x if x.dim() == 5 else x.unsqueeze(2)
    raise ValueError("the batch holds neither 'video' nor 'image' tensors")


def time_steps(step, batches: list[Any], warmup: int, device: torch.device) -> list[float]:
    times = []
    for index, batch in enumerate(batches):
        synchronize(device)
        start = time.perf_counter()
        step(batch)
        synchronize(device)
        if index >= warmup:
            times.append(time.perf_counter() - start)
    return times


def peak_memory_gb(device: torch.device) -> float:
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return peak / 2**30


def make_step(model: torch.nn.Module, mode: str, precision: str, device: torch.device, train_loss, evaluate):
    """One training step (``train_loss(batch)``, backward, AdamW) or evaluation step
    (``evaluate(batch)``) of ``model`` under the benchmark's precision."""
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")
    if mode == "train":
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step(batch):
            with autocast:
                loss = train_loss(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    else:
        model.eval()

        def step(batch):
            with autocast:
                evaluate(batch)
    return step


def measure(step, batches: list[Any], samples_per_step: float, warmup: int, device: torch.device) -> dict[str, float]:
    flops = count_flops(step, batches[0])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = time_steps(step, batches, warmup, device)
    median = statistics.median(times)
    return {"step_time_min_s": min(times), "step_time_median_s": median, "samples_per_step": samples_per_step,
            "samples_per_s": samples_per_step / median, "gflops_per_step": flops / 1e9,
            "tflops_per_s": flops / median / 1e12, "peak_memory_gb": peak_memory_gb(device)}


def run_baseline(name: str, clips: list[torch.Tensor], args: argparse.Namespace, mode: str) -> dict[str, float]:
    """A bare torchvision video model (``swin3d_t``/``swin3d_s``) on the same clips."""
    import torchvision

    device = torch.device(args.device)
    model = getattr(torchvision.models.video, name)(num_classes=2).to(device)
    if args.compile:
        model.compile()
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1, 1)
    inputs = [((c.float() / 255.0 - mean) / std) if c.dtype == torch.uint8 else c.float() for c in clips]
    labels = torch.zeros(inputs[0].shape[0], dtype=torch.long, device=device)

    def evaluate(x):
        with torch.no_grad():
            model(x)

    step = make_step(model, mode, args.precision, device,
                     lambda x: torch.nn.functional.cross_entropy(model(x).float(), labels), evaluate)
    return measure(step, inputs, float(inputs[0].shape[0]), args.warmup, device)


def run(args: argparse.Namespace, mode: str) -> dict[str, dict[str, float]]:
    device = torch.device(args.device)
    data = getattr(args, "data", "auto")
    synthetic = data == "synthetic" or (data == "auto" and wants_synthetic(args.config, args.overrides))
    args.data = "synthetic" if synthetic else "config"
    if synthetic:
        if data_kind(args.config) is None:
            raise ValueError(f"--data synthetic: generated batches exist for HandDataModule and CaptionDataModule "
                             f"configs only, not {args.config}")
        model, datamodule = build(args.config, synthetic_overrides(args.config, args.overrides))
        vocabularies = size_vocabularies(model)
        batches = synthetic_batches(datamodule, args.warmup + args.steps, model)
    else:
        model, datamodule = build(args.config, args.overrides)
        datamodule.prepare_data()
        datamodule.setup("fit" if mode == "train" else "test")
        loader = datamodule.train_dataloader() if mode == "train" else datamodule.test_dataloader()
        iterator = iter(loader)
        batches = []
        for _ in range(args.warmup + args.steps):
            try:
                item = next(iterator)
            except StopIteration:
                iterator = iter(loader)
                item = next(iterator)
            batches.append(item[0] if isinstance(item, tuple) else item)
        vocabularies = data_vocabularies(model, datamodule)
    model.to(device)
    epoch = getattr(args, "epoch", None)
    if epoch is not None:
        if not hasattr(model, "set_epoch"):
            raise ValueError(f"--epoch: {type(model).__name__} has no training stages")
        model.set_epoch(int(epoch))
    if args.compile:
        for name in ("backbone", "neck"):
            if isinstance(getattr(model, name, None), torch.nn.Module):
                getattr(model, name).compile()
    # test_step runs without no_grad: a system may need gradients at test time (STATE's perturbation)
    step = make_step(model, mode, args.precision, device, partial(model.training_step, batch_idx=0),
                     partial(model.test_step, batch_idx=0))
    batches = [to_device(b, device) for b in batches]
    if hasattr(datamodule, "on_after_batch_transfer"):
        batches = [datamodule.on_after_batch_transfer(b, 0) for b in batches]
    result = measure(step, batches, statistics.mean(sample_count(model, b) for b in batches), args.warmup, device)
    head = caption_head(model)
    if head is not None:
        per_image = statistics.mean(int(b["captions"].shape[1]) for b in batches if isinstance(b, dict) and "captions" in b)
        if mode == "train":
            result["captions_per_s"] = result["samples_per_s"] * per_image
        else:
            result["beam_size"] = float(head.beam_size)
    results = {"model": result}
    v2c_head = commonsense_head(model)
    if v2c_head is not None:
        result["videos_per_s"] = result["samples_per_s"]
        if mode == "test":
            result["beam_size"] = float(v2c_head.beam_size)
            results["generate"] = measure_generate(model, v2c_head, batches, args, device)
        result.update({key: float(value) for key, value in vocabularies.items()})
    if getattr(args, "decode_videos", None):
        results.update(measure_decoding(args, mode, model, datamodule, step, device))
    if not args.baseline:
        return results
    clips = [clips_of(model, b) for b in batches]
    del model, batches, step
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {**results, f"bare {args.baseline}": run_baseline(args.baseline, clips, args, mode)}


def data_vocabularies(model, datamodule) -> dict[str, int]:
    """A HybridNet model on its config's data: the data's vocabularies size its head (as
    ``fit`` and ``test`` do at setup); returns the sizes used."""
    if commonsense_head(model) is None:
        return {}
    if hasattr(datamodule, "input_geometry") and hasattr(model, "give_vocabularies"):
        model.give_vocabularies(datamodule.input_geometry(), "the datamodule's vocabularies")
    return size_vocabularies(model)


def measure_generate(model, head, batches: list[Any], args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """Decoding alone, as ``polyvision infer``: the caption, then the three commonsense
    sentences from it (the head's beam), without gradients; the test step also decodes the
    completion task and runs the loss and the metrics."""
    tasks = head.tasks
    head.tasks = ("generation",)
    try:
        def evaluate(batch):
            with torch.no_grad():
                for _, sub in model.sub_batches(batch):
                    model.generate(sub)

        step = make_step(model, "test", args.precision, device, None, evaluate)
        result = measure(step, batches, statistics.mean(sample_count(model, b) for b in batches), args.warmup, device)
    finally:
        head.tasks = tasks
    result["videos_per_s"] = result["samples_per_s"]
    result["beam_size"] = float(head.beam_size)
    return result


def decode_datamodule(datamodule, root: str, stage: str):
    """The config's ``V2CDataModule`` (``features: pixels``) reading the mp4 files under
    ``root`` (a V2C folder, a folder holding ``v2c/``, or ``synthetic``), in this process."""
    from polyvision.datamodules.captions.v2c_datamodule import V2CDataModule

    if not isinstance(datamodule, V2CDataModule) or datamodule.hparams.features != "pixels":
        raise ValueError("--decode-videos: needs a config whose data is a V2CDataModule with features: pixels "
                         "(e.g. configs/hybridnet/v2c_swin.yaml)")
    options = {key: value for key, value in datamodule.hparams.items() if not key.startswith("_")}
    if root == "synthetic":
        options.update(dataset="synthetic_v2c", root=None, videos_dir=None)
    else:
        folder = Path(root).expanduser()
        if not (folder / "videos").is_dir() and (folder / "v2c" / "videos").is_dir():
            folder = folder / "v2c"  # what `polyvision synth v2c DIR` writes
        options.update(dataset="v2c", root=str(folder), videos_dir=None)
    options.update(num_workers=0)
    videos = V2CDataModule(**options)
    videos.prepare_data()
    videos.setup(stage)
    return videos


def measure_decoding(args: argparse.Namespace, mode: str, model, datamodule, step,
                     device: torch.device) -> dict[str, dict[str, float]]:
    """``decode``: videos/s of the datamodule's loading from real mp4 files (decode, sample,
    resize; ``num_workers: 0``); ``decode + model``: each step loads its batch, then runs the
    model's step, timed together."""
    videos = decode_datamodule(datamodule, args.decode_videos, "fit" if mode == "train" else "test")
    loader = videos.train_dataloader() if mode == "train" else videos.test_dataloader()
    iterator = iter(loader)
    loads, totals, sizes = [], [], []
    for index in range(args.warmup + args.steps):
        synchronize(device)
        start = time.perf_counter()
        try:
            item = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            item = next(iterator)
        batch = item[0] if isinstance(item, tuple) else item
        loaded = time.perf_counter()
        batch = to_device(batch, device)
        if hasattr(videos, "on_after_batch_transfer"):
            batch = videos.on_after_batch_transfer(batch, 0)
        step(batch)
        synchronize(device)
        if index >= args.warmup:
            loads.append(loaded - start)
            totals.append(time.perf_counter() - start)
            sizes.append(sample_count(model, batch))
    per_step = statistics.mean(sizes)
    memory = peak_memory_gb(device)

    def column(times: list[float]) -> dict[str, float]:
        median = statistics.median(times)
        return {"step_time_min_s": min(times), "step_time_median_s": median, "samples_per_step": per_step,
                "samples_per_s": per_step / median, "peak_memory_gb": memory, "videos_per_s": per_step / median}

    return {"decode": column(loads), "decode + model": column(totals)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``benchmark train|test``; anything else on the line is a config override
    (e.g. ``--data.init_args.batch_size 8``)."""
    parser.add_argument("--config", required=True, help="a LightningCLI config (model + data)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=["32-true", "bf16-mixed"], default="32-true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the backbone and neck (and the baseline)")
    parser.add_argument("--baseline", choices=["swin3d_t", "swin3d_s"],
                        help="also time a bare torchvision video Swin on the same clips, in the same run")
    parser.add_argument("--data", choices=["auto", "config", "synthetic"], default="auto",
                        help="batches from the config's data, or generated ones of its shape (hand and caption "
                             "configs; auto: generated when the config's dataset has no root)")
    parser.add_argument("--epoch", type=int, default=None,
                        help="time the training stage of this epoch (CVLNM: 0 cross-entropy + syntax loss, "
                             "37 self-critical)")
    parser.add_argument("--decode-videos", metavar="ROOT",
                        help="pixel V2C configs: also time decoding real mp4 files through the config's datamodule "
                             "(a V2C folder, e.g. one `polyvision synth v2c DIR` wrote, or 'synthetic'), alone and "
                             "followed by the model step")
    parser.add_argument("--json", help="also write the measurements to this JSON file")


def _cell(value: float) -> str:
    """Four significant digits; whole numbers (vocabulary sizes, batch sizes) as they are."""
    return f"{value:.0f}" if float(value).is_integer() and abs(value) < 1e9 else f"{value:.4g}"


def main(mode: str, args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    results = run(args, mode)
    compiled = ", compiled" if args.compile else ""
    caption = str(args.config) + (" (generated batches of the config's shape)" if args.data == "synthetic" else "")
    notes = []
    model = results["model"]
    if "caption_vocabulary" in model:
        notes.append(f"vocabularies: {model['caption_vocabulary']:.0f} caption and {model['cms_vocabulary']:.0f} "
                     "commonsense words" + (" (set by the benchmark: generated batches have no data)"
                                            if args.data == "synthetic" else " (the data's)"))
    if getattr(args, "decode_videos", None):
        notes.append(f"decode columns: the mp4 files of {args.decode_videos} through the config's datamodule, "
                     "num_workers 0 (decode + model: loading and step in series)")
    table = Table(title=f"benchmark {mode} on {args.device} ({args.precision}{compiled})", caption=caption)
    table.add_column("measure")
    for name in results:
        table.add_column(name, justify="right")
    keys = list(dict.fromkeys(key for r in results.values() for key in r))
    for key in keys:
        table.add_row(key, *(_cell(r[key]) if key in r else "" for r in results.values()))
    console = Console()
    console.print(table)
    for note in notes:
        console.print(f"note: {note}", highlight=False, markup=False)
    if args.json:
        Path(args.json).write_text(json.dumps({"mode": mode, "config": str(args.config), "device": args.device,
                                               "precision": args.precision, "compile": args.compile,
                                               "data": args.data, "epoch": getattr(args, "epoch", None),
                                               "results": results}, indent=1))
    return 0
