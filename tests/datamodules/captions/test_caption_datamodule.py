"""CaptionDataModule: the shared caption batch contract on both input paths, 5 captions per
image (drawn under the sample seed in training, so a resumed run draws the same; cycled when
fewer), references and input geometry, the cocotalk files as input, synthetic data written on
first use, and every bad input as one line naming the file or skipped and counted."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from polyvision.datamodules.base import SkippingDataset
from polyvision.datamodules.captions.cocotalk import write_cocotalk_from_karpathy
from polyvision.datamodules.captions.datamodule import CaptionDataModule
from polyvision.datamodules.captions.datasets import CaptionDataset
from polyvision.datamodules.captions.records import CaptionRecord
from polyvision.datamodules.captions.vocabulary import Vocabulary
from polyvision.errors import DataError


@pytest.fixture()
def make_dm(coco_root, synthetic_options):
    def make(**kwargs):
        settings = {"dataset": "synthetic_coco", "root": str(coco_root), "synthetic_options": synthetic_options,
                    "batch_size": 6, "num_workers": 0, **kwargs}
        if settings["dataset"] != "synthetic_coco":
            settings.pop("synthetic_options")
        dm = CaptionDataModule(**settings)
        dm.prepare_data()
        return dm
    return make


def karpathy_images(folder) -> dict[int, dict]:
    return {image["cocoid"]: image for image in json.loads((folder / "dataset_coco.json").read_text())["images"]}


def test_region_batch_contract(make_dm, coco_root):
    dm = make_dm()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"captions", "tags", "regions", "region_mask", "meta", "source", "num_skipped"}
    b = len(batch["meta"])
    assert b == 6 and batch["source"] == "captions" and int(batch["num_skipped"]) == 0
    assert batch["captions"].dtype == torch.int64 and batch["captions"].shape == (b, 5, 16)
    assert batch["tags"].dtype == torch.int64 and batch["tags"].shape == (b, 5, 16)
    assert batch["regions"].dtype == torch.float32 and batch["regions"].shape[::2] == (b, 2048)
    assert batch["region_mask"].dtype == torch.bool and batch["region_mask"].shape == batch["regions"].shape[:2]
    images = karpathy_images(coco_root / "coco")
    counts = []
    for i, meta in enumerate(batch["meta"]):
        assert set(meta) == {"image_id", "file_name", "references", "path"}
        assert meta["references"] == [s["raw"] for s in images[meta["image_id"]]["sentences"]]
        assert meta["path"].endswith(meta["file_name"])
        feat = np.load(coco_root / "coco" / "cocobu_att" / f"{meta['image_id']}.npz")["feat"]
        counts.append(len(feat))
        mask = batch["region_mask"][i]
        assert mask.sum() == len(feat) and mask[: len(feat)].all()  # real regions first, then padding
        assert torch.equal(batch["regions"][i, : len(feat)], torch.from_numpy(feat))
        assert not batch["regions"][i, len(feat):].any()
        tokens = {tuple(s["tokens"]) for s in images[meta["image_id"]]["sentences"]}
        for row in batch["captions"][i]:
            assert tuple(dm.vocabulary.decode(row.tolist()).split()) in tokens
    assert len(set(counts)) > 1  # N varies, so padding was exercised
    words = batch["captions"] > 0
    assert (batch["tags"][~words] == -1).all()
    assert ((batch["tags"][words] >= 0) & (batch["tags"][words] <= 3)).all()


def test_image_batch_contract(make_dm):
    dm = make_dm(features="image", input_size=[48, 56])
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert "regions" not in batch and "region_mask" not in batch
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (6, 3, 48, 56)
    assert batch["image"].float().std() > 10  # a decoded scene, not a blank
    geometry = dm.input_geometry()["captions"]
    assert geometry["input"] == "image" and geometry["size"] == [48, 56]


def test_input_geometry_and_references(make_dm, coco_root):
    dm = make_dm()
    geometry = dm.input_geometry()
    assert geometry == {"captions": {"input": "regions", "feature_dim": 2048, "max_length": 16,
                                     "vocabulary": dm.vocabulary.words}}
    assert geometry["captions"]["vocabulary"][-1] == "UNK"
    images = karpathy_images(coco_root / "coco")
    train = dm.references("train")
    assert len(train) == 40 and set(dm.references("test")).isdisjoint(train)
    for image_id, references in train.items():
        assert images[image_id]["split"] in ("train", "restval")
        assert references == [s["raw"] for s in images[image_id]["sentences"]]


def test_training_draws_captions_faithfully_under_seeds(make_dm, monkeypatch):
    dm = make_dm()
    dataset = dm._dataset("train")
    six = next(i for i, record in enumerate(dataset.records) if len(record.tokens) == 6)
    wrapped = SkippingDataset(dataset, skip_bad_samples=False)
    draws = [wrapped[(six, seed)]["captions"] for seed in range(8)]
    assert all(torch.equal(wrapped[(six, seed)]["captions"], draws[seed]) for seed in range(8))  # same seed, same draw
    assert len({tuple(d.flatten().tolist()) for d in draws}) > 1  # the seed decides which 5 of the 6
    validation = dm._dataset("val")
    six_val = next(i for i, record in enumerate(validation.records) if len(record.tokens) == 6)
    first_five = validation[six_val]
    assert [validation.vocabulary.decode(row.tolist()).split() for row in first_five["captions"]] == \
        [tokens[:16] for tokens in validation.records[six_val].tokens[:5]]
    assert len(first_five["meta"]["references"]) == 6

    monkeypatch.setenv("PL_GLOBAL_SEED", "3")
    runs = [[(b["captions"], [m["image_id"] for m in b["meta"]]) for b in dm.train_dataloader()] for _ in range(2)]
    assert all(torch.equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(*runs))


def test_fewer_captions_are_cycled():
    vocabulary = Vocabulary(["a", "cat", "dog", "UNK"])
    record = CaptionRecord(item_id=1, file_path="x.jpg", split="train", tokens=[["a", "cat"], ["a", "dog"]],
                           raws=["A cat.", "A dog."])
    dataset = CaptionDataset([record], vocabulary, train=True, images_dir=".", image_size=[16, 16])
    assert dataset.choose(2) == [0, 1, 0, 1, 0]
    captions, tags = dataset._encode(record, dataset.choose(2))
    assert captions[:, :3].tolist() == [[1, 2, 0], [1, 3, 0]] * 2 + [[1, 2, 0]]
    assert tags[:, :3].tolist() == [[0, 1, -1]] * 5  # tagged offline: no tags in the record


def test_cocotalk_files_as_input(make_dm, coco_copy):
    write_cocotalk_from_karpathy(coco_copy / "dataset_coco.json", coco_copy)
    from_karpathy = make_dm(dataset="karpathy", root=str(coco_copy))
    from_cocotalk = make_dm(dataset="cocotalk", root=str(coco_copy))
    assert from_cocotalk.vocabulary is None and from_cocotalk.input_geometry() == from_karpathy.input_geometry()
    a, b = next(iter(from_karpathy.val_dataloader())), next(iter(from_cocotalk.val_dataloader()))
    assert torch.equal(a["captions"], b["captions"]) and torch.equal(a["tags"], b["tags"])
    assert a["meta"] == b["meta"]  # raw references from dataset_coco.json


def test_synthetic_data_is_written_on_first_use(tmp_path):
    options = {"num_images_per_split": {"train": 3, "val": 2, "test": 2}, "image_size": 32, "seed": 1}
    dm = CaptionDataModule(cache_dir=str(tmp_path), synthetic_options=options, batch_size=2, num_workers=0)
    with pytest.raises(DataError, match="prepare_data"):
        dm.setup("test")
    dm.prepare_data()
    assert (tmp_path / "coco" / "dataset_coco.json").is_file()  # cache_dir is the synthetic root
    dm.setup("test")
    assert len(dm._dataset("test")) == 2


# -- bad input ----------------------------------------------------------------------------
def one_line(error: pytest.ExceptionInfo, *names: str) -> None:
    message = str(error.value)
    assert "\n" not in message and all(name in message for name in names), message


def first_id(folder, split: str) -> int:
    return next(i for i, image in karpathy_images(folder).items() if image["split"] == split)


def test_wrong_feature_width(make_dm, coco_copy):
    image_id = first_id(coco_copy, "test")
    np.savez(coco_copy / "cocobu_att" / f"{image_id}.npz", feat=np.zeros((4, 100), np.float32))
    dm = make_dm(dataset="karpathy", root=str(coco_copy))
    with pytest.raises(DataError) as error:
        next(iter(dm.test_dataloader()))
    one_line(error, f"{image_id}.npz", "(4, 100)", "2048")
    skipping = make_dm(dataset="karpathy", root=str(coco_copy), skip_bad_samples=True)
    with pytest.warns(UserWarning, match=f"{image_id}.npz"):
        batches = list(skipping.test_dataloader())
    assert sum(int(b["num_skipped"]) for b in batches) == 1 and sum(len(b["meta"]) for b in batches) == 9


def test_image_without_features(make_dm, coco_copy):
    image_id = first_id(coco_copy, "val")
    (coco_copy / "cocobu_att" / f"{image_id}.npz").unlink()
    # a .npy file stands in for a .npz one
    npy_id = first_id(coco_copy, "test")
    (coco_copy / "cocobu_att" / f"{npy_id}.npz").unlink()
    np.save(coco_copy / "cocobu_att" / f"{npy_id}.npy", np.ones((3, 2048), np.float32))
    dm = make_dm(dataset="karpathy", root=str(coco_copy), max_regions=2)
    with pytest.raises(DataError) as error:
        list(dm.val_dataloader())
    one_line(error, f"{image_id}.npz", f"image id {image_id}")
    test = dm._dataset("test")
    sample = test[next(i for i, r in enumerate(test.records) if r.item_id == npy_id)]
    assert torch.equal(sample["regions"], torch.ones(2, 2048))  # read, and cut to max_regions
    skipping = make_dm(dataset="karpathy", root=str(coco_copy), skip_bad_samples=True)
    with pytest.warns(UserWarning):
        assert sum(int(b["num_skipped"]) for b in skipping.val_dataloader()) == 1


def test_missing_sentences_and_empty_captions(make_dm, coco_copy):
    path = coco_copy / "dataset_coco.json"
    data = json.loads(path.read_text())
    tests = [image for image in data["images"] if image["split"] == "test"]
    del tests[0]["sentences"]
    tests[1]["sentences"][2]["tokens"] = []
    path.write_text(json.dumps(data))
    with pytest.raises(DataError) as error:
        make_dm(dataset="karpathy", root=str(coco_copy)).setup("test")
    one_line(error, str(path), str(tests[0]["cocoid"]), "sentences")
    skipping = make_dm(dataset="karpathy", root=str(coco_copy), skip_bad_samples=True)
    with pytest.warns(UserWarning) as warned:
        batches = list(skipping.test_dataloader())
    messages = " ".join(str(w.message) for w in warned)
    assert "no 'sentences'" in messages and "empty caption" in messages
    assert sum(int(b["num_skipped"]) for b in batches) == 2
    assert {tests[0]["cocoid"], tests[1]["cocoid"]}.isdisjoint(skipping.references("test"))


def test_train_on_val_trains_on_val_and_still_validates(make_dm):
    plain, with_val = make_dm(), make_dm(train_on_val=True)
    with pytest.warns(UserWarning, match="train_on_val"):
        assert len(with_val._dataset("train")) == len(plain._dataset("train")) + len(plain._dataset("val"))
    assert with_val.references("val") == plain.references("val")
    assert set(with_val.references("val")) <= {r.item_id for r in with_val._dataset("train").records}


def test_missing_image_on_the_grid_path(make_dm, coco_copy):
    image = karpathy_images(coco_copy)[first_id(coco_copy, "test")]
    (coco_copy / image["filepath"] / image["filename"]).unlink()
    dm = make_dm(dataset="karpathy", root=str(coco_copy), features="image", input_size=32)
    with pytest.raises(DataError) as error:
        list(dm.test_dataloader())
    one_line(error, image["filename"], "image not found")
    skipping = make_dm(dataset="karpathy", root=str(coco_copy), features="image", input_size=32, skip_bad_samples=True)
    with pytest.warns(UserWarning, match=image["filename"]):
        assert sum(int(b["num_skipped"]) for b in skipping.test_dataloader()) == 1
