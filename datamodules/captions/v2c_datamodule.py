"""``V2CDataModule``: V2C captions and commonsense (intention, effect, attribute) over MSR-VTT
videos, for HybridNet (Yu et al., "Hybrid Reasoning Network for Video-based Commonsense
Captioning", ACM MM 2021; official code github.com/yuweijiang/HybridNet).

A sample is one caption entry of a video (its caption and that caption's commonsense strings),
in every split: V2C-Completion gives the model every ground-truth caption of a test video.

Batch contract (B caption entries):

- ``features: precomputed`` (the paper's input, ``v2c_features``), each modality optional
  (``use_appearance``, ``use_motion``, ``use_audio``; an unused one is not in the batch):
  ``appearance`` float32 (B, 20, 2048) ResNet-152 rows (20 of 40: stride 2, seeded jitter in
  training), ``motion`` float32 (B, 10, Dm) I3D rows and ``audio`` float32 (B, 10, Da)
  SoundNet rows (each reduced to 10 rows);
- ``features: pixels``: ``video`` uint8 (B, 3, T, H, W), a clip of ``clip_len`` frames every
  ``frame_interval`` decoded with ``VideoReader`` from ``video<N>.mp4`` (random start in
  training, the centre window otherwise), resized to ``size``; ``input_geometry()`` records
  the clip geometry so inference cuts videos as training did;
- ``captions`` int64 (B, 1, L) caption word ids in the caption vocabulary
  (``self.vocabulary``; ``Vocabulary`` ids: 0 padding/BOS/EOS, word i + 1 is ``words[i]``),
  L = ``max_caption_length``;
- ``intention``, ``effect``, ``attribute`` int64 (B, K, L) word ids in the commonsense
  vocabulary (``self.cms_vocabulary``), K = ``cms_per_caption`` strings of the entry (sampled
  without replacement, seeded, in training; the first K otherwise), all-zero rows padding an
  entry with fewer, and ``intention_mask`` etc. bool (B, K) marking the real rows;
- ``meta`` per sample: ``video_id``, ``caption_index`` (entry of the video), ``path`` (the
  video file), and ``references`` {"caption": all raw captions of the video, "intention" /
  "effect" / "attribute": all raw strings of this entry} for the metrics; ``source`` and
  ``num_skipped``.

``references(split)`` gives per video id every raw caption and, per type, one list of raw
strings per caption entry (the generation task's references are caption + commonsense pairs).
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from polyvision.datamodules.base import SplitLoaders
from polyvision.datamodules.cache import resolve_cache_dir
from polyvision.datamodules.captions.synthetic_v2c import (
    APPEARANCE_DIR,
    APPEARANCE_PATTERN,
    AUDIO_DIR,
    AUDIO_PATTERN,
    MOTION_DIR,
    MOTION_PATTERN,
    V2C_DIRNAME,
    VIDEOS_DIR,
    synthetic_v2c_is_complete,
    write_synthetic_v2c,
)
from polyvision.datamodules.captions.v2c import CMS_TYPES, V2CEntry, V2CVideo, read_v2c
from polyvision.datamodules.captions.v2c_features import (
    APPEARANCE_ROWS,
    REDUCED_ROWS,
    FeatureSpec,
    reduce_rows,
    select_appearance,
)
from polyvision.datamodules.captions.vocabulary import Vocabulary
from polyvision.datamodules.geometry import clip_geometry, prepare_clip
from polyvision.datamodules.video.reader import DecoderCache
from polyvision.datamodules.video.samplers import clip_indices, window_starts
from polyvision.errors import ConfigError, DataError
from pytorch_lightning.utilities import rank_zero_info
from torch.utils.data import Dataset

__all__ = ["DATASETS", "V2CDataModule", "V2CDataset"]

DATASETS = ("v2c", "synthetic_v2c")
FEATURE_KINDS = ("precomputed", "pixels")
SPLITS = ("train", "val", "test")


def _encode(vocabulary: Vocabulary, token_lists: Sequence[Sequence[str]], rows: int, length: int) -> torch.Tensor:
    out = torch.zeros(rows, length, dtype=torch.long)
    for i, tokens in enumerate(token_lists[:rows]):
        ids = vocabulary.encode(tokens)[:length]
        out[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


class V2CDataset(Dataset):
    """The caption entries of one split as samples of the batch contract (module docstring)."""

    def __init__(self, videos: list[V2CVideo], vocabulary: Vocabulary, cms_vocabulary: Vocabulary, *, train: bool,
                 features: dict[str, FeatureSpec] | None, videos_dir: Path, geometry: dict[str, Any] | None,
                 decode_device: str = "cpu", max_caption_length: int = 20, max_cms_length: int = 20,
                 cms_per_caption: int = 3):
        self.items: list[tuple[V2CVideo, int]] = [(video, k) for video in videos
                                                  for k in range(max(len(video.entries), 1))]
        self.vocabulary, self.cms_vocabulary = vocabulary, cms_vocabulary
        self.train = train
        self.features = features
        self.videos_dir = videos_dir
        self.geometry = geometry
        self.decode_device = decode_device
        self.max_caption_length, self.max_cms_length = max_caption_length, max_cms_length
        self.cms_per_caption = cms_per_caption
        self.rng = np.random.default_rng()
        self.decoders = DecoderCache(max_open=4)

    def set_sample_seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.items)

    def video_path(self, video: V2CVideo) -> Path:
        return self.videos_dir / f"{video.name}.mp4"

    def _clip(self, video: V2CVideo) -> torch.Tensor:
        assert self.geometry is not None
        path = self.video_path(video)
        if not path.is_file():
            raise DataError(path, "video file not found")
        reader = self.decoders.get(path, "auto", self.decode_device, num_threads=1)
        clip_len, interval = self.geometry["clip_len"], self.geometry["frame_interval"]
        total = reader.num_frames
        starts = window_starts(total, clip_len, interval, "center_window")
        start = starts[0]
        if self.train:
            span = (clip_len - 1) * interval + 1
            start = int(self.rng.integers(0, max(total - span, 0) + 1))
        indices, _ = clip_indices(start, clip_len, interval, total)
        return prepare_clip(reader.get_frames(indices), self.geometry)

    def __getitem__(self, index: int) -> dict[str, Any]:
        video, k = self.items[index]
        if video.problem is not None:
            raise DataError(video.source, video.problem)
        entry: V2CEntry = video.entries[k]
        sample: dict[str, Any] = {}
        if self.features is not None:
            for name, spec in self.features.items():
                rows = spec.load(video.video_id)
                if name == "appearance":
                    rows = select_appearance(rows, APPEARANCE_ROWS, self.train, self.rng)
                else:
                    rows = reduce_rows(rows, REDUCED_ROWS, self.train, self.rng)
                sample[name] = torch.from_numpy(np.ascontiguousarray(rows))
        else:
            sample["video"] = self._clip(video)
        sample["captions"] = _encode(self.vocabulary, [entry.caption], 1, self.max_caption_length)
        for kind in CMS_TYPES:
            token_lists = entry.tokens.get(kind, [])
            order = list(range(len(token_lists)))
            if self.train and len(order) > self.cms_per_caption:
                order = sorted(self.rng.choice(len(order), size=self.cms_per_caption, replace=False).tolist())
            chosen = [token_lists[i] for i in order[:self.cms_per_caption]]
            sample[kind] = _encode(self.cms_vocabulary, chosen, self.cms_per_caption, self.max_cms_length)
            mask = torch.zeros(self.cms_per_caption, dtype=torch.bool)
            mask[:len(chosen)] = True
            sample[f"{kind}_mask"] = mask
        sample["meta"] = {
            "video_id": video.video_id,
            "caption_index": k,
            "path": str(self.video_path(video)),
            "references": {"caption": [e.caption_raw for e in video.entries],
                           **{kind: list(entry.raws.get(kind, [])) for kind in CMS_TYPES},
                           # V2C-Generation scores caption + sentence against every pair of the video
                           **{f"generation_{kind}": [f"{e.caption_raw} {raw}" for e in video.entries
                                                     for raw in e.raws.get(kind, [])] for kind in CMS_TYPES}},
        }
        return sample


class V2CDataModule(SplitLoaders, pl.LightningDataModule):
    """V2C caption + commonsense data (the module docstring gives the batch contract).

    Args:
        dataset: ``v2c`` (the annotation files in ``root``, module ``v2c``) or ``synthetic_v2c``
            (written on first use to ``root`` or the cache, ``synthetic/v2c``; a copy written by
            ``polyvision synth v2c DIR`` is read as ``v2c`` from ``DIR/v2c``).
        root: the V2C folder: annotation files, ``videos/``, ``feats/resnet152/``,
            ``i3d_features/``, ``audio_features/`` (each folder can be set on its own).
        human_ranked: read ``train_cvpr_humanRank_V2C_caption.json`` instead of
            ``V2C_MSR-VTT_caption.json``.
        features: ``precomputed`` (the paper's features) or ``pixels`` (decoded clips).
        use_appearance, use_motion, use_audio: which precomputed modalities the batch holds.
        appearance_dim, motion_dim, audio_dim: feature widths (2048, 1024, 1024 in the paper).
        appearance_dir, motion_dir, audio_dir, videos_dir: folders other than the defaults.
        appearance_pattern, motion_pattern, audio_pattern: file names with ``{id}``.
        clip_len, frame_interval, size, decode_device: the pixel path's clips (``size``: a side
            or [H, W] the frames are resized to; ``decode_device``: ``cpu`` or ``cuda``, the
            ``VideoReader`` device, then use ``num_workers: 0``).
        max_caption_length, max_cms_length: word ids kept per caption / commonsense string.
        cms_per_caption: K, commonsense strings per type and caption entry in a batch.
        batch_size, num_workers, skip_bad_samples: loaders; skip_bad_samples skips (with a
            warning, counted in ``batch["num_skipped"]``) entries whose annotation, feature
            file or video is unusable instead of stopping with a ``DataError``.
        cache_dir: synthetic data location when ``root`` is not given.
        synthetic_options: keyword arguments of ``write_synthetic_v2c``.
        source: the name in ``batch["source"]`` and the key of :meth:`input_geometry`.
    """

    def __init__(
        self,
        dataset: Literal["v2c", "synthetic_v2c"] = "synthetic_v2c",
        root: str | None = None,
        human_ranked: bool = False,
        features: Literal["precomputed", "pixels"] = "precomputed",
        use_appearance: bool = True,
        use_motion: bool = True,
        use_audio: bool = True,
        appearance_dim: int = 2048,
        motion_dim: int = 1024,
        audio_dim: int = 1024,
        appearance_dir: str | None = None,
        motion_dir: str | None = None,
        audio_dir: str | None = None,
        videos_dir: str | None = None,
        appearance_pattern: str = APPEARANCE_PATTERN,
        motion_pattern: str = MOTION_PATTERN,
        audio_pattern: str = AUDIO_PATTERN,
        clip_len: int = 16,
        frame_interval: int = 1,
        size: int | Sequence[int] = 112,
        decode_device: str = "cpu",
        max_caption_length: int = 20,
        max_cms_length: int = 20,
        cms_per_caption: int = 3,
        batch_size: int = 32,
        num_workers: int = 2,
        skip_bad_samples: bool = False,
        cache_dir: str | None = None,
        synthetic_options: dict[str, Any] | None = None,
        source: str = "v2c",
    ):
        super().__init__()
        self.save_hyperparameters()
        if dataset not in DATASETS:
            raise ConfigError(f"V2CDataModule: dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
        if features not in FEATURE_KINDS:
            raise ConfigError(f"V2CDataModule: features must be one of {', '.join(FEATURE_KINDS)}, got {features!r}")
        if features == "precomputed" and not (use_appearance or use_motion or use_audio):
            raise ConfigError("V2CDataModule: precomputed features need at least one of use_appearance, use_motion, use_audio")
        if min(clip_len, frame_interval, max_caption_length, max_cms_length, cms_per_caption, batch_size,
               appearance_dim, motion_dim, audio_dim) < 1 or num_workers < 0:
            raise ConfigError("V2CDataModule: lengths, counts, widths and batch_size must be >= 1, num_workers >= 0")
        if decode_device != "cpu" and not str(decode_device).startswith("cuda"):
            raise ConfigError(f"V2CDataModule: decode_device must be 'cpu' or 'cuda', got {decode_device!r}")
        if decode_device != "cpu" and num_workers > 0:
            raise ConfigError("V2CDataModule: decode_device 'cuda' decodes in the main process; set num_workers: 0")
        self.synthetic = dataset == "synthetic_v2c"
        if self.synthetic:
            self.synthetic_root = (Path(root).expanduser() if root is not None
                                   else resolve_cache_dir(cache_dir, "synthetic", "v2c"))
            self.root = self.synthetic_root / V2C_DIRNAME
        elif root is None:
            raise ConfigError("V2CDataModule: set root to the V2C data directory (or use dataset: synthetic_v2c)")
        else:
            self.root = Path(root).expanduser()

        def folder(value: str | None, default: str) -> Path:
            return Path(value).expanduser() if value else self.root / default

        self.videos_dir = folder(videos_dir, VIDEOS_DIR)
        self.feature_specs: dict[str, FeatureSpec] = {}
        if use_appearance:
            self.feature_specs["appearance"] = FeatureSpec("appearance", folder(appearance_dir, APPEARANCE_DIR),
                                                           appearance_pattern, appearance_dim)
        if use_motion:
            self.feature_specs["motion"] = FeatureSpec("motion", folder(motion_dir, MOTION_DIR), motion_pattern,
                                                       motion_dim)
        if use_audio:
            self.feature_specs["audio"] = FeatureSpec("audio", folder(audio_dir, AUDIO_DIR), audio_pattern, audio_dim)
        self.clip_size = [int(size)] * 2 if isinstance(size, int) else [int(v) for v in size]
        self.vocabulary: Vocabulary | None = None
        self.cms_vocabulary: Vocabulary | None = None
        self.videos: dict[str, list[V2CVideo]] = {}
        self.datasets: dict[str, V2CDataset] = {}

    # -- synthetic data -----------------------------------------------------------------
    def prepare_data(self) -> None:
        """Write the synthetic dataset unless a complete one with the same settings exists."""
        options = self.hparams.synthetic_options or {}
        if not self.synthetic or synthetic_v2c_is_complete(self.synthetic_root, **options):
            return
        rank_zero_info(f"writing synthetic V2C to {self.synthetic_root}")
        write_synthetic_v2c(self.synthetic_root, **options)

    # -- annotations ----------------------------------------------------------------------
    def _load(self) -> None:
        if self.vocabulary is not None:
            return
        hp = self.hparams
        if self.synthetic and not synthetic_v2c_is_complete(self.synthetic_root, **(hp.synthetic_options or {})):
            raise DataError(self.root, "synthetic dataset not prepared; call prepare_data() first")
        data = read_v2c(self.root, human_ranked=hp.human_ranked, strict=not hp.skip_bad_samples)
        self.videos = data.videos
        self.vocabulary, self.cms_vocabulary = data.caption_vocabulary, data.cms_vocabulary
        bad = sum(video.problem is not None for videos in self.videos.values() for video in videos)
        if bad:
            warnings.warn(f"{bad} V2C videos have unusable annotations and will be skipped", stacklevel=2)

    def references(self, split: str) -> dict[int, dict[str, list]]:
        """Video id -> ``{"caption": [raw caption per entry], "intention" / "effect" /
        "attribute": [[raw strings of entry 0], [of entry 1], ...]}`` for the usable videos."""
        self._load()
        split = "test" if split == "predict" else split
        if split not in self.videos:
            raise ValueError(f"unknown split {split!r}")
        return {video.video_id: {"caption": [e.caption_raw for e in video.entries],
                                 **{kind: [list(e.raws.get(kind, [])) for e in video.entries] for kind in CMS_TYPES}}
                for video in self.videos[split] if video.problem is None}

    # -- datasets -----------------------------------------------------------------------
    def _dataset(self, split: str) -> V2CDataset:
        if split in self.datasets:
            return self.datasets[split]
        self._load()
        hp = self.hparams
        name = "test" if split == "predict" else split
        videos = self.videos[name]
        if not videos:
            raise DataError(self.root, f"the {name} split holds no videos")
        pixels = hp.features == "pixels"
        if pixels and not self.videos_dir.is_dir():
            raise DataError(self.videos_dir, "video folder not found (set videos_dir, or features: precomputed)")
        if not pixels:
            for spec in self.feature_specs.values():
                if not spec.directory.is_dir():
                    raise DataError(spec.directory, f"{spec.name} feature folder not found "
                                    f"(set {spec.name}_dir, or use_{spec.name}: false)")
        assert self.vocabulary is not None and self.cms_vocabulary is not None
        dataset = V2CDataset(videos, self.vocabulary, self.cms_vocabulary, train=split == "train",
                             features=None if pixels else dict(self.feature_specs), videos_dir=self.videos_dir,
                             geometry=self.clip_geometry() if pixels else None, decode_device=hp.decode_device,
                             max_caption_length=hp.max_caption_length, max_cms_length=hp.max_cms_length,
                             cms_per_caption=hp.cms_per_caption)
        self.datasets[split] = dataset
        return dataset

    def _loader(self, split: str, shuffle: bool):
        loader = super()._loader(split, shuffle)
        if self.hparams.decode_device != "cpu":
            loader.pin_memory = False  # clips are already on the GPU
        return loader

    def setup(self, stage: str | None = None) -> None:
        """Read the annotations the stage needs (fit: train+val, validate: val, test: test,
        predict: test; None: all)."""
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",),
                  None: ("train", "val", "test")}.get(stage)
        if splits is None:
            raise ValueError(f"unknown stage {stage!r}")
        for split in splits:
            self._dataset(split)

    def clip_geometry(self) -> dict[str, Any]:
        hp = self.hparams
        return clip_geometry(hp.clip_len, hp.frame_interval, self.clip_size)

    def input_geometry(self) -> dict[str, dict[str, Any]]:
        """The model input and both vocabularies its word ids mean (kept in checkpoints)."""
        self._load()
        hp = self.hparams
        assert self.vocabulary is not None and self.cms_vocabulary is not None
        words = {"vocabulary": list(self.vocabulary.words), "cms_vocabulary": list(self.cms_vocabulary.words),
                 "max_caption_length": int(hp.max_caption_length), "max_cms_length": int(hp.max_cms_length)}
        if hp.features == "pixels":
            return {hp.source: {**self.clip_geometry(), **words}}
        dims = {name: spec.dim for name, spec in self.feature_specs.items()}
        return {hp.source: {"input": "features", "feature_dims": dims,
                            "rows": {name: APPEARANCE_ROWS if name == "appearance" else REDUCED_ROWS for name in dims},
                            **words}}
