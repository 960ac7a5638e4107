"""Synthetic hand datasets in the exact on-disk layouts of InterHand2.6M v1.0 and FreiHAND v2,
so the real readers (``interhand.py``, ``freihand.py``) read them unchanged.

Both writers render articulated hands of a MANO-format model: the generated hand-like model
of ``synthetic_mano.py`` (written to ``<root>/mano/``) unless ``mano_dir`` names the real
one. A scene holds one or two hands with plausible random poses: the fingers point roughly
up in the image (tilted up to 35 degrees), the hand turned up to 60 degrees from facing the
cameras' side (``MAX_YAW``), fingers mildly curled (each of the 45 finger values ~ N(0, 0.25)
clipped to +-0.6 rad, offsets from ``hands_mean``), shapes ``betas ~ N(0, 0.5)``. They are
drawn as flat-shaded meshes (``render.render_silhouette``; right hand in ACR's skin colour,
left in its blue-grey, each finger tinted and one side of the hand darker so that palm and
back differ: ``hand_face_colours``) on a plain colour with Gaussian noise, and the
annotations are exact: joints are the MANO joints (FreiHAND order, "ih26m" fingertips).

- ``write_synthetic_interhand``: ``<root>/InterHand2.6M/`` with ``images/{split}/Capture{c}/
  synthetic/cam{id}/image{frame}.jpg`` and the four annotation JSONs per split. One capture
  per split with four cameras on a 90-degree arc in front of the scene (``campos`` in mm,
  ``camrot`` world -> camera, ``focal``, ``princpt``), each frame seen by two cameras; frames cycle
  through interacting, right-only and left-only hands. World coordinates are millimetres
  (``world_coord``), MANO fits are world-space metres as NeuralAnnot's. Images are
  ``image_size`` high and ``image_size * 334 / 512`` wide (InterHand2.6M's aspect).
- ``write_synthetic_freihand``: ``<root>/FreiHAND/`` with ``training/rgb`` (each sample in
  the four versions gs, hom, sample, auto: the same hand on four backgrounds),
  ``training/mask``, ``evaluation/rgb`` and ``{training,evaluation}_{K,xyz,mano,verts,
  scale}.json``; right hands only, ``uv_root`` the projection of joint 9 and ``scale`` the
  length of the bone from joint 9 to joint 10.

Each dataset is written whole into a temporary folder and renamed into place
(``datamodules/synthetic.py``), with a ``COMPLETE`` marker recording its settings; so is
the generated MANO model.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from polyvision.datamodules.hands.annotations import ManoPair, freihand_to_ih, project
from polyvision.datamodules.synthetic import marker_matches, split_counts, write_atomically
from polyvision.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = [
    "FREIHAND_DIRNAME",
    "IH_DIRNAME",
    "MANO_DIRNAME",
    "SYNTHETIC_WRITERS",
    "ensure_synthetic_mano",
    "synthetic_freihand_is_complete",
    "synthetic_freihand_settings",
    "synthetic_interhand_is_complete",
    "synthetic_interhand_settings",
    "write_synthetic_freihand",
    "write_synthetic_interhand",
]

IH_DIRNAME = "InterHand2.6M"
FREIHAND_DIRNAME = "FreiHAND"
MANO_DIRNAME = "mano"
GENERATOR_VERSION = 2  # 2: fingers tinted, one side of the hand shaded darker
MANO_SEED = 0
IH_SPLITS = ("train", "val", "test")
FREIHAND_VERSION_COUNT = 4
RIGHT_RGB = (0.94, 0.71, 0.53)  # ACR's hand colours (render.py)
LEFT_RGB = (0.46, 0.59, 0.64)
# Tints mixed into the hand colour per finger, in MANO's joint order of the 16 parts
# (palm, index, middle, pinky, ring, thumb), so a flat-shaded hand shows which finger is which.
FINGER_TINTS = np.array([[1.0, 1.0, 1.0], [1.0, 0.85, 0.3], [0.35, 0.85, 0.35], [0.85, 0.35, 0.85],
                         [0.3, 0.8, 0.9], [0.9, 0.3, 0.25]])
TINT_WEIGHT = 0.45
PALMAR_SHADE = 0.7
JPEG_QUALITY = 95
# Hands turn at most 60 degrees about the vertical and the four InterHand cameras stand on a
# 90-degree arc in front of them: every view sees the hands from within about 105 degrees of
# one side, a range a small model learns from a few hundred images (the full circle of the
# real capture dome needs far more data than a test can train on).
MAX_YAW = np.radians(60)
CAMERA_AZIMUTHS = np.radians([-45.0, -15.0, 15.0, 45.0])


# ----------------------------------------------------------------------------------------
# Settings and markers
# ----------------------------------------------------------------------------------------
def synthetic_interhand_settings(num_images_per_split: int | Mapping[str, int] | None = None, image_size: int = 256,
                                 seed: int = 0, mano_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The settings recorded in (and compared against) the ``COMPLETE`` marker."""
    return {"generator": "polyvision.synthetic_interhand", "version": GENERATOR_VERSION,
            "num_images_per_split": split_counts(num_images_per_split, {"train": 48, "val": 16, "test": 16}),
            "image_size": int(image_size), "seed": int(seed),
            "mano_dir": None if mano_dir is None else str(Path(mano_dir).expanduser().resolve())}


def synthetic_freihand_settings(num_images_per_split: int | Mapping[str, int] | None = None, image_size: int = 224,
                                seed: int = 0, mano_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The settings recorded in the marker (training counts unique samples, 4 images each)."""
    return {"generator": "polyvision.synthetic_freihand", "version": GENERATOR_VERSION,
            "num_images_per_split": split_counts(num_images_per_split, {"training": 24, "evaluation": 16}),
            "image_size": int(image_size), "seed": int(seed),
            "mano_dir": None if mano_dir is None else str(Path(mano_dir).expanduser().resolve())}


def _mano_settings() -> dict[str, Any]:
    return {"generator": "polyvision.synthetic_mano", "seed": MANO_SEED}


def _mano_ready(root: Path, mano_dir: str | os.PathLike | None) -> bool:
    return mano_dir is not None or marker_matches(root / MANO_DIRNAME, _mano_settings())


def synthetic_interhand_is_complete(root: str | os.PathLike, **settings: Any) -> bool:
    """True when ``root`` holds a complete synthetic InterHand2.6M written with ``settings``
    (keyword arguments of :func:`synthetic_interhand_settings`) and its MANO model."""
    root = Path(root).expanduser()
    return (marker_matches(root / IH_DIRNAME, synthetic_interhand_settings(**settings))
            and _mano_ready(root, settings.get("mano_dir")))


def synthetic_freihand_is_complete(root: str | os.PathLike, **settings: Any) -> bool:
    """True when ``root`` holds a complete synthetic FreiHAND written with ``settings``."""
    root = Path(root).expanduser()
    return (marker_matches(root / FREIHAND_DIRNAME, synthetic_freihand_settings(**settings))
            and _mano_ready(root, settings.get("mano_dir")))


def ensure_synthetic_mano(root: str | os.PathLike, mano_dir: str | os.PathLike | None = None) -> Path:
    """``mano_dir`` when given, else ``<root>/mano`` holding the generated hand-like model
    (written atomically unless already there)."""
    if mano_dir is not None:
        from polyvision.models.layers.mano import require_mano_dir

        return require_mano_dir(mano_dir)
    root = Path(root).expanduser()
    if not marker_matches(root / MANO_DIRNAME, _mano_settings()):
        from polyvision.models.layers.generated_hand import write_synthetic_mano

        def write(directory: Path) -> None:
            write_synthetic_mano(directory, seed=MANO_SEED)

        write_atomically(root, MANO_DIRNAME, _mano_settings(), write)
    return root / MANO_DIRNAME


# ----------------------------------------------------------------------------------------
# Scenes
# ----------------------------------------------------------------------------------------
def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    matrix, _ = cv2.Rodrigues((np.asarray(axis, np.float64) / np.linalg.norm(axis) * angle).reshape(3, 1))
    return matrix


def _random_orient(rng: np.random.Generator) -> np.ndarray:
    """A global orientation (3x3) in a frame with y down: the model's fingers (+y) point up
    (-y), turned about the vertical by up to :data:`MAX_YAW` from facing the cameras' side
    (-z), then tilted by up to 35 degrees about a random horizontal axis."""
    up = _rotation(np.array([0.0, 0.0, 1.0]), np.pi)  # fingers +y -> -y
    yaw = _rotation(np.array([0.0, 1.0, 0.0]), rng.uniform(-MAX_YAW, MAX_YAW))
    tilt_axis = np.array([np.cos(a := rng.uniform(0, 2 * np.pi)), 0.0, np.sin(a)])
    tilt = _rotation(tilt_axis, rng.uniform(-np.radians(35), np.radians(35)))
    return tilt @ yaw @ up


def _random_hand(rng: np.random.Generator, orient: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(pose (48,), betas (10,))`` with global orientation ``orient``."""
    pose = np.zeros(48)
    vector, _ = cv2.Rodrigues(orient)
    pose[:3] = vector.reshape(3)
    pose[3:] = np.clip(rng.normal(0.0, 0.25, 45), -0.6, 0.6)
    return pose, rng.normal(0.0, 0.5, 10)


def _pose_hand(mano: ManoPair, slot: int, pose: np.ndarray, betas: np.ndarray, center: np.ndarray):
    """MANO ``trans`` placing the hand's joint centroid at ``center``; vertices and joints."""
    out = mano.forward(slot, pose, betas)
    joints = out.joints[0].double().numpy()
    trans = center - joints.mean(axis=0)
    return trans, out.vertices[0].double().numpy() + trans, joints + trans


def hand_face_colours(mano: ManoPair, slot: int, rgb: tuple[float, float, float]) -> np.ndarray:
    """Per-face colours ``(F, 3)`` of the ``slot`` hand in ``mano.faces`` order: ``rgb`` mixed
    with a tint per finger (:data:`FINGER_TINTS`, parts by skinning weight), and the faces on
    one side of the rest-pose palm plane (wrist, index and pinky bases) shaded darker.

    A silhouette in one flat colour looks the same from the palm and from the back (mirrored),
    so its 3D orientation could not be learned from it; finger tints and a darker side, like
    the texture of real skin, tell them apart."""
    from polyvision.datamodules.hands.render import mano_part_labels

    model = mano.models[slot]
    faces = mano.faces
    joint = mano_part_labels(model.lbs_weights.numpy(), faces) - 1  # 0..15, MANO order
    finger = np.where(joint == 0, 0, (joint - 1) // 3 + 1)
    colours = (1.0 - TINT_WEIGHT) * np.asarray(rgb, np.float64) + TINT_WEIGHT * FINGER_TINTS[finger]
    template = model.v_template.double().numpy()
    joints = model.joint_template.double().numpy()
    triangles = template[faces]
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    palm_normal = np.cross(joints[1] - joints[0], joints[7] - joints[0])  # index and pinky bases
    colours[normals @ palm_normal > 0] *= PALMAR_SHADE
    return colours


def _background(rng: np.random.Generator, height: int, width: int, colour: np.ndarray | None = None) -> np.ndarray:
    base = rng.uniform(40, 220, 3) if colour is None else colour
    noise = rng.normal(0.0, 8.0, (height, width, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _render(height: int, width: int, hands: list[tuple[np.ndarray, tuple]], camera: np.ndarray, faces: np.ndarray,
            background: np.ndarray) -> np.ndarray:
    """Hands given as camera-space vertices (metres) and a colour, seen through ``camera``."""
    from polyvision.datamodules.hands.render import render_silhouette

    meshes = []
    depths = np.concatenate([v[:, 2] for v, _ in hands]) if hands else np.ones(1)
    for vertices, rgb in hands:
        pixels, depth = project(vertices, camera)
        meshes.append((np.concatenate([pixels, (depth * camera[0, 0] / depths.mean())[:, None]], axis=1), faces, rgb))
    return render_silhouette(height, width, meshes, background=background)


def _write_jpeg(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 RGB
        raise OSError(f"cannot encode {path}")
    path.write_bytes(data.tobytes())


def _dump(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def _progress(items: Any, enabled: bool, desc: str) -> Any:
    if not enabled:
        return items
    try:
        from tqdm.auto import tqdm

        return tqdm(items, desc=desc, leave=False)
    except ImportError:  # pragma: no cover - tqdm ships with pytorch-lightning
        return items


# ----------------------------------------------------------------------------------------
# InterHand2.6M
# ----------------------------------------------------------------------------------------
def _look_at(campos: np.ndarray, target: np.ndarray) -> np.ndarray:
    """World -> camera rotation (rows: camera x, y, z axes in world) looking at ``target``,
    with the camera's y axis (image down) along the world's +y."""
    forward = (target - campos) / np.linalg.norm(target - campos)
    right = np.cross(np.array([0.0, 1.0, 0.0]), forward)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack([right, down, forward])


def _ih_cameras(rng: np.random.Generator, height: int, width: int, capture: int) -> dict[str, dict[str, Any]]:
    cams: dict[str, dict[str, Any]] = {}
    for k in range(4):
        azimuth = CAMERA_AZIMUTHS[k] + rng.uniform(-0.15, 0.15)
        elevation = rng.uniform(-0.25, 0.25)
        distance = rng.uniform(0.55, 0.65) * 1000.0
        campos = distance * np.array([np.sin(azimuth) * np.cos(elevation), np.sin(elevation),
                                      -np.cos(azimuth) * np.cos(elevation)])
        focal = width * rng.uniform(1.45, 1.65)
        cams[str(400000 + 100 * capture + k)] = {
            "campos": campos, "camrot": _look_at(campos, np.zeros(3)),
            "focal": np.array([focal, focal * rng.uniform(0.995, 1.005)]),
            "princpt": np.array([width / 2 + rng.uniform(-3, 3), height / 2 + rng.uniform(-3, 3)]),
        }
    return cams


def _intrinsics(cam: dict[str, Any]) -> np.ndarray:
    (fx, fy), (cx, cy) = cam["focal"], cam["princpt"]
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def _ih_scene(rng: np.random.Generator, mano: ManoPair, kind: str) -> dict[str, Any]:
    """One frame in world space (metres): per present hand pose, betas, trans, vertices, joints."""
    slots = {"interacting": (0, 1), "right": (0,), "left": (1,)}[kind]
    gap = rng.uniform(0.05, 0.08) if kind == "interacting" else 0.0
    hands = {}
    for slot in slots:
        side_x = (-gap if slot == 0 else gap) if kind == "interacting" else 0.0
        center = np.array([side_x, 0.0, 0.0]) + rng.normal(0.0, 0.01, 3)
        pose, betas = _random_hand(rng, _random_orient(rng))
        trans, vertices, joints = _pose_hand(mano, slot, pose, betas, center)
        hands[slot] = {"pose": pose, "betas": betas, "trans": trans, "vertices": vertices, "joints": joints}
    return hands


def _write_interhand_tree(ds: Path, counts: dict[str, int], image_size: int, seed: int, mano_dir: Path,
                          progress: bool) -> dict[str, Any]:
    mano = ManoPair(mano_dir)
    faces = mano.faces
    colours = [hand_face_colours(mano, slot, rgb) for slot, rgb in enumerate((RIGHT_RGB, LEFT_RGB))]
    height, width = int(image_size), max(16, round(image_size * 334 / 512))
    kinds = ("interacting", "right", "left")
    summary: dict[str, Any] = {}
    for capture, split in enumerate(IH_SPLITS):
        rng = np.random.default_rng([seed, 7, capture])
        cams = _ih_cameras(rng, height, width, capture)
        cam_ids = list(cams)
        images, annotations, joints_json, mano_json = [], [], {}, {}
        num_frames = (counts[split] + 1) // 2
        for frame in _progress(range(num_frames), progress, f"synthetic InterHand2.6M {split}"):
            kind = kinds[frame % 3]
            hands = _ih_scene(rng, mano, kind)
            world = np.zeros((2, 21, 3))
            valid = np.zeros((2, 21))
            fits: dict[str, Any] = {"right": None, "left": None}
            for slot, hand in hands.items():
                world[slot] = hand["joints"] * 1000.0
                valid[slot] = 1.0
                fits[("right", "left")[slot]] = {"pose": hand["pose"].tolist(), "shape": hand["betas"].tolist(),
                                                 "trans": hand["trans"].tolist()}
            frame_key = str(frame)
            joints_json[frame_key] = {"world_coord": freihand_to_ih(world).tolist(),
                                      "joint_valid": freihand_to_ih(valid).tolist(),
                                      "hand_type": kind, "hand_type_valid": 1}
            mano_json[frame_key] = fits
            background_colour = rng.uniform(40, 220, 3)
            for view in range(2):
                if len(images) >= counts[split]:
                    break
                cam_id = cam_ids[(frame + view) % len(cam_ids)]
                cam = cams[cam_id]
                intrinsics = _intrinsics(cam)
                to_cam = [((hand["vertices"] * 1000.0 - cam["campos"]) @ cam["camrot"].T / 1000.0,
                           colours[slot]) for slot, hand in hands.items()]
                rgb = _render(height, width, to_cam, intrinsics, faces, _background(rng, height, width, background_colour))
                file_name = f"Capture{capture}/synthetic/cam{cam_id}/image{frame:05d}.jpg"
                _write_jpeg(ds / "images" / split / file_name, rgb)
                cam_joints = (freihand_to_ih(world) - cam["campos"]) @ cam["camrot"].T
                pixels, _ = project(cam_joints, intrinsics)
                present = freihand_to_ih(valid) > 0
                low, high = pixels[present].min(axis=0), pixels[present].max(axis=0)
                image_id = len(images)
                images.append({"id": image_id, "file_name": file_name, "width": width, "height": height,
                               "capture": capture, "subject": 0, "seq_name": "synthetic", "camera": cam_id,
                               "frame_idx": frame})
                annotations.append({"id": image_id, "image_id": image_id,
                                    "bbox": [float(low[0]), float(low[1]), float(high[0] - low[0]), float(high[1] - low[1])],
                                    "joint_valid": freihand_to_ih(valid).tolist(), "hand_type": kind,
                                    "hand_type_valid": 1})
        cameras_json = {str(capture): {key: {cid: np.asarray(cam[key]).tolist() for cid, cam in cams.items()}
                                       for key in ("campos", "camrot", "focal", "princpt")}}
        folder = ds / "annotations" / split
        _dump(folder / f"InterHand2.6M_{split}_data.json", {"images": images, "annotations": annotations})
        _dump(folder / f"InterHand2.6M_{split}_camera.json", cameras_json)
        _dump(folder / f"InterHand2.6M_{split}_joint_3d.json", {str(capture): joints_json})
        _dump(folder / f"InterHand2.6M_{split}_MANO_NeuralAnnot.json", {str(capture): mano_json})
        summary[f"{split}_images"] = len(images)
    return summary


def _write_dataset(root: str | os.PathLike, dirname: str, what: str, settings: dict[str, Any],
                   write_tree: Callable[..., dict[str, Any]], progress: bool) -> Path:
    """Check the image size, make sure the hand model is there, and write one dataset tree
    atomically into ``root/dirname`` with ``write_tree(folder, counts, image_size, seed,
    model_dir, progress)``."""
    image_size, seed = int(settings["image_size"]), int(settings["seed"])
    if image_size < 64:
        raise ConfigError(f"image_size must be at least 64, got {image_size}")
    model_dir = ensure_synthetic_mano(root, settings.get("mano_dir"))
    log.info("writing synthetic " + what + " to %s", settings["num_images_per_split"], Path(root).expanduser() / dirname)
    return write_atomically(root, dirname, settings,
                            lambda ds: write_tree(ds, settings["num_images_per_split"], image_size, seed, model_dir,
                                                  progress))


def write_synthetic_interhand(root: str | os.PathLike, num_images_per_split: int | Mapping[str, int] | None = None,
                              image_size: int = 256, seed: int = 0, mano_dir: str | os.PathLike | None = None,
                              progress: bool = True) -> Path:
    """Write a synthetic InterHand2.6M v1.0 to ``root/InterHand2.6M`` (and, without
    ``mano_dir``, the generated MANO model to ``root/mano``); return ``root``.

    Args:
        root: output folder.
        num_images_per_split: images per split, an int for all or ``{"train": 48, "val": 16,
            "test": 16}`` (the default).
        image_size: image height; the width is ``image_size * 334 / 512``.
        seed: the output is a deterministic function of all the settings.
        mano_dir: a MANO folder to render with instead of the generated model.
        progress: show a progress bar.
    """
    settings = synthetic_interhand_settings(num_images_per_split, image_size, seed, mano_dir)
    return _write_dataset(root, IH_DIRNAME, "InterHand2.6M (%s images)", settings, _write_interhand_tree, progress)


# ----------------------------------------------------------------------------------------
# FreiHAND
# ----------------------------------------------------------------------------------------
def _write_freihand_tree(ds: Path, counts: dict[str, int], image_size: int, seed: int, mano_dir: Path,
                         progress: bool) -> dict[str, Any]:
    mano = ManoPair(mano_dir)
    faces = mano.faces
    right_colours = hand_face_colours(mano, 0, RIGHT_RGB)
    size = int(image_size)
    for split_index, split in enumerate(("training", "evaluation")):
        rng = np.random.default_rng([seed, 11, split_index])
        n = counts[split]
        tables: dict[str, list] = {"K": [], "xyz": [], "mano": [], "verts": [], "scale": []}
        for idx in _progress(range(n), progress, f"synthetic FreiHAND {split}"):
            focal = size * rng.uniform(1.9, 2.2)
            intrinsics = np.array([[focal, 0.0, size / 2 + rng.uniform(-2, 2)],
                                   [0.0, focal, size / 2 + rng.uniform(-2, 2)], [0.0, 0.0, 1.0]])
            pose, betas = _random_hand(rng, _random_orient(rng))
            center = np.array([rng.uniform(-0.01, 0.01), rng.uniform(-0.01, 0.01), rng.uniform(0.55, 0.65)])
            _, vertices, joints = _pose_hand(mano, 0, pose, betas, center)
            uv, _ = project(joints, intrinsics)
            tables["K"].append(intrinsics.tolist())
            tables["xyz"].append(joints.tolist())
            tables["verts"].append(vertices.tolist())
            tables["scale"].append(float(np.linalg.norm(joints[10] - joints[9])))
            tables["mano"].append([[*pose.tolist(), *betas.tolist(), *uv[9].tolist(), tables["scale"][-1]]])
            versions = FREIHAND_VERSION_COUNT if split == "training" else 1
            for version in range(versions):
                colour = np.array([60.0, 200.0, 70.0]) if version == 0 else None
                rgb = _render(size, size, [(vertices, right_colours)], intrinsics, faces,
                              _background(rng, size, size, colour))
                _write_jpeg(ds / split / "rgb" / f"{idx + n * version:08d}.jpg", rgb)
            if split == "training":
                mask = _render(size, size, [(vertices, (1.0, 1.0, 1.0))], intrinsics, faces, np.zeros((size, size, 3), np.uint8))
                silhouette = np.where(mask.max(axis=2, keepdims=True) > 0, 255, 0).astype(np.uint8)
                _write_jpeg(ds / split / "mask" / f"{idx:08d}.jpg", np.repeat(silhouette, 3, axis=2))
        for kind, values in tables.items():
            _dump(ds / f"{split}_{kind}.json", values)
    return {"training_samples": counts["training"], "training_images": counts["training"] * FREIHAND_VERSION_COUNT,
            "evaluation_images": counts["evaluation"]}


def write_synthetic_freihand(root: str | os.PathLike, num_images_per_split: int | Mapping[str, int] | None = None,
                             image_size: int = 224, seed: int = 0, mano_dir: str | os.PathLike | None = None,
                             progress: bool = True) -> Path:
    """Write a synthetic FreiHAND v2 to ``root/FreiHAND`` (and, without ``mano_dir``, the
    generated MANO model to ``root/mano``); return ``root``.

    Args:
        root: output folder.
        num_images_per_split: ``{"training": 24, "evaluation": 16}`` (the default) or an int
            for both; training counts unique samples, each written in the 4 versions.
        image_size: square image side (FreiHAND: 224).
        seed: the output is a deterministic function of all the settings.
        mano_dir: a MANO folder to render with instead of the generated model.
        progress: show a progress bar.
    """
    settings = synthetic_freihand_settings(num_images_per_split, image_size, seed, mano_dir)
    return _write_dataset(root, FREIHAND_DIRNAME, "FreiHAND (%s samples)", settings, _write_freihand_tree, progress)


SYNTHETIC_WRITERS: dict[str, Callable[..., Path]] = {
    "interhand": write_synthetic_interhand,
    "freihand": write_synthetic_freihand,
}
