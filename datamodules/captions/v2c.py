"""Reader of the V2C annotations over MSR-VTT (Fang et al., "Video2Commonsense", EMNLP 2020;
used by HybridNet, Yu et al., ACM MM 2021, official code github.com/yuweijiang/HybridNet,
``utils/dataloader.py``).

Files (all in one annotation folder, ``V2C_annotations.zip`` of the V2C release):

- ``V2C_MSR-VTT_caption.json``: ``{"video<N>": [entry, ...]}``; an entry holds
  ``final_caption`` (a token list ``<sos> .. <eos>``) and ``intention``, ``effect``,
  ``attribute``: lists of ``[raw_string, token_list]`` pairs (token lists again with
  ``<sos>``/``<eos>``, stripped here); the raw strings are the evaluation references;
- ``train_cvpr_humanRank_V2C_caption.json``: the human re-ranked variant, same structure
  (``human_ranked=True``);
- ``v2c_info.json``: the commonsense vocabulary (``ix_to_word``/``word_to_ix``) and
  ``videos`` ``{"train", "val", "test"}``: lists of integer MSR-VTT ids;
- ``msrvtt_new_info.json``: the caption vocabulary (``ix_to_word``/``word_to_ix``).

Vocabularies are returned as :class:`~polyvision.datamodules.captions.vocabulary.Vocabulary`
(word ``i + 1`` is ``words[i]``, 0 padding/BOS/EOS): the files' words in their id order
without ``<pad>``/``<sos>``/``<eos>``, their ``<unk>`` renamed ``UNK`` (added when missing).

Reading is lenient per video (``V2CVideo.problem``), so that ``skip_bad_samples`` can skip
and count a video without annotation or with an entry lacking ``final_caption``; strict
reading raises one ``DataError`` naming the file instead.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyvision.datamodules.captions.vocabulary import UNK, Vocabulary
from polyvision.errors import DataError

__all__ = [
    "CAPTION_FILE",
    "CMS_TYPES",
    "HUMAN_RANKED_FILE",
    "INFO_FILE",
    "VOCAB_FILE",
    "V2CData",
    "V2CEntry",
    "V2CVideo",
    "read_v2c",
    "read_v2c_vocabulary",
]

CAPTION_FILE = "V2C_MSR-VTT_caption.json"
HUMAN_RANKED_FILE = "train_cvpr_humanRank_V2C_caption.json"
INFO_FILE = "v2c_info.json"
VOCAB_FILE = "msrvtt_new_info.json"
CMS_TYPES = ("intention", "effect", "attribute")
SPECIAL = {"<pad>", "<sos>", "<eos>"}
UNK_NAMES = {"<unk>", UNK}
SPLITS = ("train", "val", "test")


@dataclass
class V2CEntry:
    """One caption of a video with its commonsense descriptions.

    ``caption``/``caption_raw``: the caption tokens (without ``<sos>``/``<eos>``) and their
    joined string; ``tokens[type]``/``raws[type]``: per commonsense type, the token lists and
    the raw reference strings (same order)."""

    caption: list[str]
    caption_raw: str
    tokens: dict[str, list[list[str]]] = field(default_factory=dict)
    raws: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class V2CVideo:
    video_id: int
    split: str
    entries: list[V2CEntry] = field(default_factory=list)
    source: str = ""
    problem: str | None = None

    @property
    def name(self) -> str:
        return f"video{self.video_id}"


@dataclass
class V2CData:
    videos: dict[str, list[V2CVideo]]
    caption_vocabulary: Vocabulary
    cms_vocabulary: Vocabulary


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise DataError(path, "annotation file not found")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DataError(path, f"not readable JSON ({error})") from None


def read_v2c_vocabulary(path: str | os.PathLike) -> Vocabulary:
    """A ``Vocabulary`` from a V2C info file's ``ix_to_word`` (see the module docstring)."""
    path = Path(path)
    data = _load_json(path)
    table = data.get("ix_to_word") if isinstance(data, dict) else None
    if not isinstance(table, dict) or not table:
        raise DataError(path, "has no ix_to_word table")
    try:
        ordered = sorted(table.items(), key=lambda item: int(item[0]))
    except ValueError:
        raise DataError(path, "ix_to_word keys must be integer word ids") from None
    words, seen = [], set()
    for _, word in ordered:
        word = UNK if word in UNK_NAMES else str(word)
        if word in SPECIAL or word in seen:
            continue
        seen.add(word)
        words.append(word)
    if UNK not in seen:
        words.append(UNK)
    return Vocabulary(words)


def _strip(tokens: Any) -> list[str]:
    tokens = [str(t) for t in tokens]
    if tokens and tokens[0] == "<sos>":
        tokens = tokens[1:]
    if tokens and tokens[-1] == "<eos>":
        tokens = tokens[:-1]
    return tokens


def _entry(raw: Any) -> V2CEntry:
    """One caption entry; ``ValueError`` says what is wrong with it."""
    if not isinstance(raw, dict):
        raise ValueError("a caption entry is not an object")  # noqa: TRY004 - caught as a problem
    if "final_caption" not in raw:
        raise ValueError("a caption entry has no final_caption")
    caption = _strip(raw["final_caption"])
    if not caption:
        raise ValueError("a caption entry has an empty final_caption")
    entry = V2CEntry(caption=caption, caption_raw=" ".join(caption))
    for kind in CMS_TYPES:
        pairs = raw.get(kind, [])
        if not isinstance(pairs, list):
            raise ValueError(f"{kind} is not a list")  # noqa: TRY004 - caught as a problem
        tokens, raws = [], []
        for pair in pairs:
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[0], str)):
                raise ValueError(f"a {kind} item is not a [raw_string, token_list] pair")
            stripped = _strip(pair[1])
            if not stripped:
                continue
            tokens.append(stripped)
            raws.append(pair[0].strip())
        entry.tokens[kind] = tokens
        entry.raws[kind] = raws
    return entry


def read_v2c(root: str | os.PathLike, human_ranked: bool = False, strict: bool = True,
             caption_file: str | None = None, info_file: str = INFO_FILE, vocab_file: str = VOCAB_FILE) -> V2CData:
    """Read the V2C annotation folder ``root``: per split (``v2c_info.json``'s ``videos``) the
    videos with their caption entries, and both vocabularies.

    Args:
        human_ranked: read ``train_cvpr_humanRank_V2C_caption.json`` instead of
            ``V2C_MSR-VTT_caption.json`` (``caption_file`` overrides both names).
        strict: raise ``DataError`` for the first unusable video (no annotation for an id in
            the split lists, an entry without ``final_caption``); else mark it in ``problem``.
    """
    root = Path(root)
    captions_path = root / (caption_file or (HUMAN_RANKED_FILE if human_ranked else CAPTION_FILE))
    info_path = root / info_file
    captions = _load_json(captions_path)
    info = _load_json(info_path)
    if not isinstance(captions, dict):
        raise DataError(captions_path, "must map video<N> to lists of caption entries")
    splits = info.get("videos") if isinstance(info, dict) else None
    if not isinstance(splits, dict) or not all(isinstance(splits.get(s), list) for s in SPLITS):
        raise DataError(info_path, "needs videos {train, val, test}: lists of integer MSR-VTT ids")
    videos: dict[str, list[V2CVideo]] = {}
    for split in SPLITS:
        found = []
        for raw_id in splits[split]:
            try:
                video_id = int(raw_id)
            except (TypeError, ValueError):
                raise DataError(info_path, f"{split} id {raw_id!r} is not an integer") from None
            video = V2CVideo(video_id, split, source=str(captions_path))
            items = captions.get(video.name)
            try:
                if items is None:
                    raise ValueError(f"{split} id {video_id} has no annotation")
                if not isinstance(items, list) or not items:
                    raise ValueError("has no caption entries")
                video.entries = [_entry(item) for item in items]
            except ValueError as error:
                problem = str(error) if str(error).startswith(split) else f"{video.name}: {error}"
                if strict:
                    raise DataError(captions_path, problem) from None
                video.problem = problem
            found.append(video)
        videos[split] = found
    return V2CData(videos, read_v2c_vocabulary(root / vocab_file), read_v2c_vocabulary(info_path))
