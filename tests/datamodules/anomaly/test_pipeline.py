"""Video anomaly data: the Ped2 / Avenue / ShanghaiTech readers on synthetic datasets in
their own layouts, the object pipeline (foreground boxes, overlap removal, flow, elastic
cubes), the cube cache and STATEDataModule, and one clear error per kind of bad input."""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import torch
from polyvision.datamodules.anomaly import datamodule as datamodule_module
from polyvision.datamodules.anomaly import pipeline as pipeline_module
from polyvision.datamodules.anomaly.datamodule import STATEDataModule
from polyvision.datamodules.anomaly.pipeline import (
    ObjectPipeline,
    PipelineSettings,
    foreground_boxes,
    remove_covered_boxes,
)
from polyvision.datamodules.anomaly.readers import find_ground_truth, read_videos
from polyvision.datamodules.anomaly.synthetic import (
    SYNTHETIC_WRITERS,
    synthetic_anomaly_is_complete,
)
from polyvision.datamodules.video.reader import VideoReader
from polyvision.errors import ConfigError, DataError, WeightsError
from scipy.io import loadmat, savemat

SMALL = dict(num_train=2, num_test=3, num_frames=12)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """One small synthetic dataset per layout (Avenue in both of its layouts)."""
    roots = {}
    for name, writer in SYNTHETIC_WRITERS.items():
        roots[name] = tmp_path_factory.mktemp(name)
        writer(roots[name], seed=1, **SMALL)
    roots["avenue_frames"] = tmp_path_factory.mktemp("avenue_frames")
    SYNTHETIC_WRITERS["avenue"](roots["avenue_frames"], seed=1, layout="frames", **SMALL)
    return roots


def test_writers_produce_the_real_layouts(datasets):
    ped2 = datasets["ped2"] / "UCSDped2"
    assert sorted(p.name for p in (ped2 / "Test").iterdir()) == ["Test001", "Test001_gt", "Test002", "Test002_gt",
                                                                  "Test003", "Test003_gt"]
    assert (ped2 / "Train" / "Train001" / "001.tif").is_file() and (ped2 / "Test" / "Test003_gt" / "012.bmp").is_file()
    avenue = datasets["avenue"] / "avenue"
    assert (avenue / "training_videos" / "01.avi").is_file() and (avenue / "testing_videos" / "03.avi").is_file()
    cells = loadmat(str(avenue / "ground_truth_demo" / "testing_label_mask" / "2_label.mat"))["volLabel"]
    assert cells.shape == (1, 12) and cells[0, 0].shape == (180, 320)
    assert (datasets["avenue_frames"] / "avenue" / "testing" / "frames" / "01" / "0000.jpg").is_file()
    sht = datasets["shanghaitech"] / "ShanghaiTech"
    assert (sht / "training" / "videosFrame" / "01_001" / "000.jpg").is_file()
    assert np.load(sht / "testing" / "test_frame_mask" / "01_0001.npy").shape == (12,)
    assert synthetic_anomaly_is_complete(datasets["ped2"], "ped2", seed=1, **SMALL)
    assert not synthetic_anomaly_is_complete(datasets["ped2"], "ped2", seed=2, **SMALL)


def test_writer_is_deterministic(tmp_path):
    for seed_root in ("a", "b"):
        SYNTHETIC_WRITERS["shanghaitech"](tmp_path / seed_root, seed=5, num_train=1, num_test=1, num_frames=8)
    for first in (tmp_path / "a").rglob("*.*"):
        second = tmp_path / "b" / first.relative_to(tmp_path / "a")
        assert first.read_bytes() == second.read_bytes(), first


@pytest.mark.parametrize("name", ["ped2", "avenue", "avenue_frames", "shanghaitech"])
def test_readers_find_videos_and_frame_labels(datasets, name):
    dataset = name.split("_")[0]
    train, test = read_videos(dataset, datasets[name], "train"), read_videos(dataset, datasets[name], "test")
    assert len(train) == 2 and len(test) == 3
    assert all(v.labels is None and v.num_frames == 12 for v in train)
    for video in test:
        assert video.labels.shape == (12,) and set(np.unique(video.labels)) <= {0, 1}
    # every test video holds its anomaly for a contiguous stretch, and normal frames before it
    for video in test:
        anomalous = np.flatnonzero(video.labels)
        assert len(anomalous) and video.labels[0] == 0
        assert np.all(np.diff(anomalous) == 1)
    with VideoReader(test[0].path) as reader:
        assert len(reader) == 12


def test_avenue_layouts_agree_and_labels_come_from_the_masks(datasets):
    avi = read_videos("avenue", datasets["avenue"], "test")
    frames = read_videos("avenue", datasets["avenue_frames"], "test")
    for a, b in zip(avi, frames):
        assert a.name == b.name and np.array_equal(a.labels, b.labels)
    mat = datasets["avenue"] / "avenue" / "ground_truth_demo" / "testing_label_mask" / "1_label.mat"
    masks = loadmat(str(mat))["volLabel"][0]
    assert np.array_equal(avi[0].labels, [int(m.max() > 0) for m in masks])


def test_shanghaitech_official_training_videos_are_read_when_frames_are_absent(datasets, tmp_path):
    source = datasets["shanghaitech"] / "ShanghaiTech"
    target = tmp_path / "ShanghaiTech"
    shutil.copytree(source / "testing", target / "testing")
    for folder in sorted((source / "training" / "videosFrame").iterdir()):
        frames = [cv2.imread(str(p)) for p in sorted(folder.iterdir())]
        (target / "training" / "videos").mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(target / "training" / "videos" / f"{folder.name}.avi"),
                                 cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (frames[0].shape[1], frames[0].shape[0]))
        for frame in frames:
            writer.write(frame)
        writer.release()
    videos = read_videos("shanghaitech", tmp_path, "train")
    expected = read_videos("shanghaitech", datasets["shanghaitech"], "train")
    assert [(v.name, v.num_frames) for v in videos] == [(v.name, v.num_frames) for v in expected]
    assert all(v.path.suffix == ".avi" for v in videos)


def test_ground_truth_is_found_beside_a_video(datasets):
    ped2 = read_videos("ped2", datasets["ped2"], "test")[0]
    assert np.array_equal(find_ground_truth(ped2.path, 12), ped2.labels)
    avenue = read_videos("avenue", datasets["avenue"], "test")[1]
    assert np.array_equal(find_ground_truth(avenue.path, 12), avenue.labels)
    sht = read_videos("shanghaitech", datasets["shanghaitech"], "test")[2]
    assert np.array_equal(find_ground_truth(sht.path, 12), sht.labels)
    with pytest.warns(UserWarning, match="labels for 13 frames"):
        assert find_ground_truth(ped2.path, 13) is None


def test_bad_datasets_raise_one_clear_error(datasets, tmp_path):
    with pytest.raises(DataError, match="dataset root not found"):
        read_videos("ped2", tmp_path / "missing", "train")
    with pytest.raises(ConfigError, match="unknown dataset 'ped1'"):
        read_videos("ped1", datasets["ped2"], "train")
    broken = tmp_path / "ped2"
    shutil.copytree(datasets["ped2"] / "UCSDped2", broken / "UCSDped2")
    shutil.rmtree(broken / "UCSDped2" / "Test" / "Test002_gt")
    with pytest.raises(DataError, match="Test002_gt: ground-truth mask folder"):
        read_videos("ped2", broken, "test")
    sht = tmp_path / "sht"
    shutil.copytree(datasets["shanghaitech"] / "ShanghaiTech", sht / "ShanghaiTech")
    np.save(sht / "ShanghaiTech" / "testing" / "test_frame_mask" / "01_0001.npy", np.zeros(5))
    with pytest.raises(DataError, match="01_0001.npy: 5 frame labels for 12 frames"):
        read_videos("shanghaitech", sht, "test")
    avenue = tmp_path / "avenue"
    shutil.copytree(datasets["avenue"] / "avenue", avenue / "avenue")
    mat = avenue / "avenue" / "ground_truth_demo" / "testing_label_mask" / "3_label.mat"
    savemat(str(mat), {"labels": np.zeros(3)})
    with pytest.raises(DataError, match="3_label.mat: no 'volLabel'"):
        read_videos("avenue", avenue, "test")
    mat.write_bytes(b"not a mat file")
    with pytest.raises(DataError, match="3_label.mat: cannot read MAT file"):
        read_videos("avenue", avenue, "test")


def test_overlap_removal_drops_boxes_covered_by_larger_ones():
    boxes = np.array([[0, 0, 99, 99],      # large
                      [10, 10, 29, 29],    # inside the large one: dropped
                      [90, 90, 119, 119],  # overlaps the large one by 10×10 / 30×30 = 11 %: kept
                      [200, 200, 209, 209]])
    kept = remove_covered_boxes(boxes, cover_threshold=0.6)
    assert kept.tolist() == [[0, 0, 99, 99], [90, 90, 119, 119], [200, 200, 209, 209]]
    assert len(remove_covered_boxes(boxes, cover_threshold=1.0)) == 4


def test_foreground_boxes_find_moving_textured_objects():
    settings = PipelineSettings.for_dataset("ped2")
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 2, (8, 4)).repeat(3, 0).repeat(3, 1) * 80.0  # 24×12 blocky object
    frames = []
    for t in range(3):
        frame = np.full((96, 144), 150.0)
        frame[30:54, 40 + 2 * t:52 + 2 * t] = 40 + texture
        frames.append(np.repeat(frame[..., None], 3, 2).astype(np.uint8))
    blurred = [pipeline_module.blurred_frame(f, settings.foreground_kernel) for f in frames]
    boxes = foreground_boxes(blurred, np.zeros((0, 4), np.int64), settings)
    assert len(boxes) == 1
    x1, y1, x2, y2 = boxes[0]
    assert x1 <= 40 and y1 <= 30 and x2 >= 55 and y2 >= 53 and x2 - x1 < 30  # the object, 2 px margin
    assert len(foreground_boxes([blurred[0]] * 3, np.zeros((0, 4), np.int64), settings)) == 0  # nothing moves
    # a detected box (+2 px) is blanked out of the motion mask
    assert len(foreground_boxes(blurred, np.array([[38, 28, 58, 56]]), settings)) == 0


def test_foreground_motion_is_thresholded_per_colour_channel():
    """A change in one colour channel alone moves a pixel (STATE thresholds each channel); in
    grey it would be diluted below the threshold (0.114 x 60 = 6.8 < 18)."""
    settings = PipelineSettings.for_dataset("ped2")
    frames = []
    for t in range(3):
        frame = np.full((96, 144, 3), 100, np.uint8)
        frame[30:60, 40 + 3 * t:60 + 3 * t, 2] = 160  # a blue-only object moving right
        frames.append(frame)
    blurred = [pipeline_module.blurred_frame(f, settings.foreground_kernel) for f in frames]
    assert len(foreground_boxes(blurred, np.zeros((0, 4), np.int64), settings)) >= 1  # its moving edges
    grey = [pipeline_module.blurred_frame(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), settings.foreground_kernel) for f in frames]
    assert len(foreground_boxes(grey, np.zeros((0, 4), np.int64), settings)) == 0


def test_motion_windows_repeat_the_edge_frames():
    windows = pipeline_module.HardBorderWindows(context=1)
    assert windows.window(0, 10) == [0, 0, 1] and windows.window(9, 10) == [8, 9, 9]
    assert windows.window(4, 10) == [3, 4, 5] and windows.window(0, 1) == [0, 0, 0]


def test_cubes_use_the_centre_frame_box_and_elastic_windows(datasets):
    video = read_videos("ped2", datasets["ped2"], "train")[0]
    settings = PipelineSettings.for_dataset("ped2", {"flow_size": None, "chunk_frames": 5})
    cubes = ObjectPipeline(settings, device="cpu").extract_video(video.path)
    assert cubes.raw.shape[1:] == (3, 7, 32, 32) and cubes.flow.shape[1:] == (2, 7, 32, 32)
    assert cubes.raw.dtype == np.uint8 and cubes.flow.dtype == np.float16
    assert set(cubes.frame_of_cube.tolist()) == set(range(12))  # walkers are always in view
    with VideoReader(video.path) as reader:
        frames = reader.get_frames(range(12)).numpy()
    for index in (0, len(cubes.raw) - 1):  # first frame: window 0..6; last frame: window 5..11
        t = cubes.frame_of_cube[index]
        start = min(max(t - 3, 0), 12 - 7)
        x1, y1, x2, y2 = cubes.boxes[index]
        expected = np.stack([cv2.resize(frames[s][y1:y2 + 1, x1:x2 + 1], (32, 32)) for s in range(start, start + 7)])
        assert np.array_equal(cubes.raw[index], expected.transpose(3, 0, 1, 2))
    # flow of frame s is (s -> s+1): a walker moving right has positive mean x-flow over its box
    assert np.isfinite(cubes.flow.astype(np.float32)).all()


def test_flow_models_and_detectors_load_local_weights_only(tmp_path):
    from torchvision.models.optical_flow import raft_small

    frames = [np.random.default_rng(i).integers(0, 255, (40, 56, 3), dtype=np.uint8) for i in range(2)]
    torch.save(raft_small(weights=None).state_dict(), tmp_path / "raft_small.pth")
    settings = PipelineSettings.from_dict({"flow_model": "raft_small", "flow_weights": str(tmp_path / "raft_small.pth"),
                                           "flow_size": None})
    flow = ObjectPipeline(settings, device="cpu").flows([(frames[0], frames[1])])[0]
    assert flow.shape == (40, 56, 2) and np.isfinite(flow).all()
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    torch.save(fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict(), tmp_path / "frcnn.pth")
    detector = PipelineSettings.from_dict({"detector": "fasterrcnn_resnet50_fpn", "detector_score": 0.0,
                                           "detector_weights": str(tmp_path / "frcnn.pth"), "detector_size": [64, 96]})
    boxes = ObjectPipeline(detector, device="cpu").detect(frames)
    assert len(boxes) == 2 and all(b.shape[1:] == (4,) and b.dtype == np.int64 for b in boxes)
    missing = PipelineSettings.from_dict({"detector_weights": str(tmp_path / "coco.pth")})
    with pytest.raises(WeightsError, match="coco.pth: detector weights file not found"):
        ObjectPipeline(missing, device="cpu")
    with pytest.raises(WeightsError, match="raft.pth: RAFT weights file not found"):
        STATEDataModule(root=str(tmp_path), pipeline={"flow_weights": str(tmp_path / "raft.pth")})
    wrong = PipelineSettings.from_dict({"detector_weights": str(tmp_path / "raft_small.pth")})
    with pytest.raises(WeightsError, match="does not fit fasterrcnn_resnet50_fpn_v2"):
        ObjectPipeline(wrong, device="cpu").detect(frames)
    with pytest.raises(ConfigError, match="pipeline: unknown setting 'flow'"):
        PipelineSettings.from_dict({"flow": "raft"})
    with pytest.raises(ConfigError, match="detector one of"):
        PipelineSettings.from_dict({"detector": "yolo"})


def test_cache_is_reused_and_invalidated_by_settings(datasets, tmp_path, monkeypatch):
    builds = []
    original = pipeline_module.build_cube_cache
    monkeypatch.setattr(datamodule_module, "build_cube_cache", lambda *a, **k: builds.append(a[4]) or original(*a, **k))

    def module(**pipeline):
        return STATEDataModule(dataset="shanghaitech", root=str(datasets["shanghaitech"]), cache_dir=str(tmp_path),
                               batch_size=8, num_workers=0, progress=False, pipeline={"flow_size": None, **pipeline})

    first = module()
    first.prepare_data()  # no trainer: both splits
    assert builds == ["train", "test"]
    directory = first.cache("train").directory
    again = module()
    again.setup("fit")
    assert builds == ["train", "test"] and again.cache("train").directory == directory
    changed = module(foreground_threshold=25)
    changed.setup("fit")
    assert builds == ["train", "test", "train"] and changed.cache("train").directory != directory


def test_datamodule_batches_score_every_test_frame(datasets, tmp_path):
    def module(**pipeline):
        return STATEDataModule(dataset="ped2", root=str(datasets["ped2"]), cache_dir=str(tmp_path), batch_size=8,
                               num_workers=0, progress=False, pipeline={"flow_size": None, **pipeline})

    def scored_frames(datamodule):
        frames, empty = set(), 0
        for batch in datamodule.test_dataloader():
            frames |= set(zip(batch["video_index"].tolist(), batch["frame_index"].tolist()))
            empty += int((~batch["has_object"]).sum())
        return frames, empty

    every_frame = {(v, f) for v in range(3) for f in range(12)}
    datamodule = module()
    datamodule.setup("test")
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["video"].shape == (8, 3, 7, 32, 32) and batch["video"].dtype == torch.uint8
    assert batch["flow"].shape == (8, 2, 7, 32, 32) and batch["flow"].dtype == torch.float32
    assert batch["has_object"].all() and batch["source"] == "video" and len(batch["meta"]) == 8
    assert scored_frames(datamodule) == (every_frame, 0)
    assert datamodule.val_dataloader() == []
    # frames without any box are still scored, as empty samples
    nothing = module(foreground_min_area=10**6)
    assert scored_frames(nothing) == (every_frame, 36)
    assert nothing.input_geometry()["video"]["object_pipeline"]["foreground_min_area"] == 10**6
    with pytest.raises(DataError, match="no objects found in the training videos"):
        nothing.train_dataloader()


def test_datamodule_configuration_errors(tmp_path):
    with pytest.raises(ConfigError, match="data.root"):
        STATEDataModule(dataset="ped2")
    with pytest.raises(ConfigError, match="unknown dataset"):
        STATEDataModule(dataset="ucsd", root=str(tmp_path))
    with pytest.raises(ConfigError, match="pipeline: unknown setting 'thresh'"):
        STATEDataModule(dataset="ped2", root=str(tmp_path), pipeline={"thresh": 3})
