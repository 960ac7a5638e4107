"""``polyvision infer`` on ACR checkpoints: images (JSON hands mapped back to the original
pixels, a mesh picture), videos (per-frame records, an overlay mp4, One-Euro ``--smooth``)
and the white-padding geometry that maps predictions back. Nothing is trained: a tiny ACR
whose camera scale is pinned so its meshes are visible, detection threshold 0 so every image
has both hands."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from polyvision.datamodules.geometry import apply_affine, input_affine, invert_affine, prepare_image

SIZE = 64
GEOMETRY = {"hands": {"input": "image", "size": [SIZE, SIZE], "pad": "white", "normalize": "minus_one_to_one"}}
IMAGE_HW = (48, 80)  # not square: padded top and bottom


def tiny_acr():
    from polyvision.heads.hands import TwoHandHead
    from polyvision.models.acr import ACR

    torch.manual_seed(0)
    model = ACR(heads={"hands": TwoHandHead("generated", head_width=16, part_feature_channels=32)},
                backbone="resnet10t", backbone_kwargs={"out_indices": [1, 2, 3]}, pretrained=None)
    model.hparams["input_geometry"] = GEOMETRY
    head = model.heads["hands"]
    with torch.no_grad():  # camera (s, tx, ty) = (6, 0, 0) at every cell: hands ~20 px wide, centred
        for fusion in head.fusion:
            fusion.weight[:3] = 0.0
            fusion.bias[:3] = torch.tensor([6.0, 0.0, 0.0])
    return model


def save_lightning_checkpoint(model, path) -> None:
    """As ``tests/models/test_model_contract.py`` (what ``load_model`` reads)."""
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)


FRAMES = 6


def write_video(path, frames: int = FRAMES, height: int = 48, width: int = 80, fps: int = 10) -> None:
    import av

    rng = np.random.default_rng(1)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for _ in range(frames):  # noise: every frame's prediction differs
            image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def acr(tmp_path_factory):
    root = tmp_path_factory.mktemp("acr")
    model = tiny_acr()
    model.hparams["heads"]["hands"]["init_args"]["detection_threshold"] = 0.0  # force detections
    checkpoint = root / "acr.ckpt"
    save_lightning_checkpoint(model, checkpoint)
    image = root / "hands.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (*IMAGE_HW, 3), dtype=np.uint8)).save(image)
    video = root / "clip.mp4"
    write_video(video)
    out = root / "out"
    # ``polyvision infer`` as a user runs it (tests/helpers.py ``run_cli``), started now and read
    # when a test needs it, so its start-up overlaps the in-process tests
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1", PYTHONWARNINGS="ignore")
    process = subprocess.Popen([sys.executable, "-m", "polyvision.cli", "infer", "--checkpoint", str(checkpoint),
                                "--output-dir", str(out), "--device", "cpu", "--skeleton", str(image), str(video)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = {"root": root, "checkpoint": checkpoint, "image": image, "video": video, "out": out, "process": process}
    yield state
    if process.poll() is None:
        process.kill()
        process.communicate()


def cli(acr) -> subprocess.CompletedProcess:
    """The CLI run's result (waits for it once)."""
    if "cli" not in acr:
        stdout, stderr = acr["process"].communicate(timeout=600)
        acr["cli"] = subprocess.CompletedProcess(acr["process"].args, acr["process"].returncode, stdout, stderr)
    return acr["cli"]


def frames_of(path):
    return [json.loads(line) for line in open(path)]


def test_white_padding_maps_points_back_exactly():
    geometry = GEOMETRY["hands"]
    affine = input_affine((48, 80), geometry)
    # 80 wide -> 64: scale 0.8, the 48 rows become 38.4 centred in 64 (12.8 white above)
    np.testing.assert_allclose(affine, [[0.8, 0, 0], [0, 0.8, 12.8]])
    corners = np.array([[0.0, 0.0], [80.0, 48.0], [40.0, 24.0]])
    np.testing.assert_allclose(apply_affine(affine, corners), [[0, 12.8], [64, 51.2], [32, 32]])
    back = invert_affine(affine)
    np.testing.assert_allclose(apply_affine(back, apply_affine(affine, corners)), corners, atol=1e-12)
    tall = input_affine((100, 50), geometry)  # padded left and right
    np.testing.assert_allclose(apply_affine(tall, [[0.0, 0.0], [50.0, 100.0]]), [[16, 0], [48, 64]])
    # the datamodule's crop="full" box: the same affine, and the same pixels (bicubic, white border)
    from polyvision.datamodules.hands.annotations import crop_affine

    np.testing.assert_allclose(affine, crop_affine((40.0, 24.0), 80.0, SIZE))
    rgb = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    image, returned = prepare_image(rgb, geometry, return_affine=True)
    np.testing.assert_array_equal(returned, affine)
    shifted = affine.copy()
    shifted[:, 2] += affine[:, :2] @ np.array([0.5, 0.5]) - 0.5
    expected = cv2.warpAffine(rgb, shifted, (SIZE, SIZE), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=(255, 255, 255))
    assert image.dtype == torch.uint8 and image.shape == (3, SIZE, SIZE)
    np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), expected)
    assert (image[:, :12] == 255).all() and (image[:, 52:] == 255).all()  # white bands
    # no pad: the old bilinear resize, unchanged
    plain = prepare_image(rgb, {"input": "image", "size": [24, 24]})
    np.testing.assert_array_equal(plain.permute(1, 2, 0).numpy(), cv2.resize(rgb, (24, 24), interpolation=cv2.INTER_LINEAR))


def test_smooth_video_changes_less_from_frame_to_frame(acr):
    from polyvision.scripts.infer import run

    out = acr["root"] / "smoothing"
    raw, errors = run(acr["checkpoint"], [acr["video"]], out, "cpu", 4)
    smooth, more_errors = run(acr["checkpoint"], [acr["video"]], out, "cpu", 4, smooth=True)
    assert not errors and not more_errors and raw[0]["smoothed"] is False and smooth[0]["smoothed"] is True
    assert smooth[0]["hands_mp4"] == str(out / "clip-2.hands.mp4") and (out / "clip.hands.mp4").is_file()
    raw_frames, smooth_frames = frames_of(raw[0]["frames_jsonl"]), frames_of(smooth[0]["frames_jsonl"])

    def series(frames, side, key):
        return np.array([[h[key] for h in f["hands"] if h["side"] == side][0] for f in frames], dtype=np.float64)

    for side in ("right", "left"):
        for key in ("pose", "shape"):
            a, b = series(raw_frames, side, key), series(smooth_frames, side, key)
            np.testing.assert_allclose(b[0], a[0], atol=1e-6)  # the first sample passes unchanged
            assert np.abs(np.diff(b, axis=0)).mean() < 0.7 * np.abs(np.diff(a, axis=0)).mean(), (side, key)
        # joints and vertices follow the smoothed parameters: projection consistent with the camera
        for hand in (h for f in smooth_frames for h in f["hands"] if h["side"] == side):
            s, tx, ty = hand["camera"]
            np.testing.assert_allclose(hand["joints_2d"], s * np.asarray(hand["joints_3d"])[:, :2] + [tx, ty], atol=1e-5)


def test_smoothing_restarts_when_a_hand_disappears():
    model = tiny_acr()
    model.configure_inference(smooth=True)
    filters: dict = {}
    rng = np.random.default_rng(0)

    def hand(side):
        return {"side": side, "pose": rng.normal(0, 0.3, 48).tolist(), "shape": rng.normal(0, 1, 10).tolist(),
                "camera": [6.0, 0.0, 0.0]}

    model._smoothed("hands", [hand("right"), hand("left")], filters, 0.0, 10.0)
    moved = hand("right")
    out = model._smoothed("hands", [moved], filters, 0.1, 10.0)  # left vanished; right filtered
    assert not np.allclose(out[0]["pose"], moved["pose"])
    assert ("hands", "left") not in filters
    back = hand("left")
    out = model._smoothed("hands", [hand("right"), back], filters, 0.2, 10.0)
    np.testing.assert_allclose(out[1]["pose"], back["pose"])  # a fresh filter: the sample as it is
    assert np.shape(out[1]["vertices"]) == (778, 3)


def test_cli_image_and_video(acr):
    result = cli(acr)
    assert result.returncode == 0, result.stderr[-3000:]
    records = {r["path"]: r for r in (json.loads(line) for line in result.stdout.splitlines() if line.startswith("{"))}
    image_record = records[str(acr["image"])]
    assert image_record["image_size"] == list(IMAGE_HW)
    hands = image_record["hands"]
    assert sorted(hand["side"] for hand in hands) == ["left", "right"]
    for hand in hands:
        assert 0.0 <= hand["score"] <= 1.0
        assert np.shape(hand["joints_3d"]) == (21, 3) and np.shape(hand["joints_2d"]) == (21, 2)
        assert np.shape(hand["joints_2d_pixels"]) == (21, 2) and np.shape(hand["vertices"]) == (778, 3)
        assert (len(hand["pose"]), len(hand["shape"]), len(hand["camera"])) == (48, 10, 3)
        np.testing.assert_allclose(hand["joints_3d"][9], 0.0, atol=1e-6)  # relative to joint 9
        # normalised input square -> input pixels -> original pixels (scale 1.25, 12.8 px of white above)
        input_px = (np.asarray(hand["joints_2d"]) + 1) / 2 * SIZE
        expected = np.stack([input_px[:, 0] * 1.25, (input_px[:, 1] - 12.8) * 1.25], 1)
        pixels = np.asarray(hand["joints_2d_pixels"])
        np.testing.assert_allclose(pixels, expected, atol=2e-3)
        assert (pixels >= 0).all() and (pixels[:, 0] <= IMAGE_HW[1]).all() and (pixels[:, 1] <= IMAGE_HW[0]).all()
        assert np.ptp(pixels, axis=0).max() > 5  # a visible hand, not a point
    picture = np.asarray(Image.open(image_record["hands_png"]))
    original = np.asarray(Image.open(acr["image"]))
    assert picture.shape == original.shape
    changed = (picture != original).any(-1)
    assert 30 < changed.sum() < changed.size  # the meshes are drawn, over the image

    video_record = records[str(acr["video"])]
    assert video_record["num_frames"] == FRAMES and video_record["frames_with_hands"] == FRAMES
    assert video_record["smoothed"] is False and video_record["image_size"] == list(IMAGE_HW)
    frames = frames_of(video_record["frames_jsonl"])
    assert [f["frame"] for f in frames] == list(range(FRAMES))
    assert all(len(f["hands"]) == 2 and np.shape(f["hands"][0]["vertices"]) == (778, 3) for f in frames)
    from polyvision.datamodules.video.reader import VideoReader

    with VideoReader(video_record["hands_mp4"]) as reader:
        assert len(reader) == FRAMES and tuple(reader.size) == IMAGE_HW


def test_second_run_keeps_pictures_and_threshold(acr, capsys):
    from polyvision.scripts.infer import run

    assert cli(acr).returncode == 0, cli(acr).stderr[-3000:]
    out = acr["out"]
    picture = out / "hands.hands.png"
    before = picture.read_bytes()
    # a second run into the same folder, with a threshold no hand passes: a record, no error
    none, errors = run(acr["checkpoint"], [acr["image"]], out, "cpu", 4, threshold=1.01)
    assert not errors and none[0]["hands"] == [] and "no hand detected" in capsys.readouterr().err
    assert none[0]["hands_png"] == str(out / "hands-2.hands.png") and (out / "hands-2.hands.png").is_file()
    assert picture.read_bytes() == before
    assert (out / "predictions.jsonl").is_file() and (out / "predictions-2.jsonl").is_file()


def test_acr_options_are_ignored_with_a_note_for_other_models(capsys):
    from polyvision.scripts.infer import configure

    class OtherModel:
        pass

    configure(OtherModel(), None, False, False)
    assert capsys.readouterr().err == ""
    configure(OtherModel(), 0.5, True, False)
    assert "--threshold, --smooth apply to ACR checkpoints; ignored for OtherModel" in capsys.readouterr().err
    model = tiny_acr()
    configure(model, 0.25, True, True)
    assert model.heads["hands"].detection_threshold == 0.25 and model.inference_options == {"smooth": True, "skeleton": True}
