"""The MANO layer (``polyvision.models.layers.mano``) on the generated hand-like model of
``polyvision.models.layers.generated_hand``, checked against the equations, against
independent rigid-body maths (scipy rotations) and against smplx as an oracle."""
from __future__ import annotations

import math
import pickle
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import torch
from scipy.spatial.transform import Rotation

from polyvision.models.layers.generated_hand import synthetic_mano_arrays, write_synthetic_mano
from polyvision.errors import ConfigError, DataError
from polyvision.models.layers.mano import (
    FINGERTIP_IDS,
    MANO_PARENTS,
    MANO_TO_21,
    MANOModel,
    align_to_root,
    apply_left_shapedirs_fix,
    axis_angle_to_rotmat,
    load_mano_arrays,
    pose_from_rot6d,
    require_mano_dir,
    rot6d_to_rotmat,
    rotmat_to_axis_angle,
)

MIRROR = torch.tensor([-1.0, 1.0, 1.0])


@pytest.fixture(scope="module")
def mano_dir(tmp_path_factory) -> Path:
    return write_synthetic_mano(tmp_path_factory.mktemp("mano"), seed=3)


@pytest.fixture(scope="module")
def right_arrays(mano_dir) -> dict[str, np.ndarray]:
    return load_mano_arrays(mano_dir / "MANO_RIGHT.pkl")


def random_inputs(batch: int = 3, seed: int = 0, scale: float = 0.6):
    generator = torch.Generator().manual_seed(seed)
    pose = torch.randn(batch, 48, generator=generator) * scale
    betas = torch.randn(batch, 10, generator=generator)
    transl = torch.randn(batch, 3, generator=generator) * 0.1
    return pose, betas, transl


def mirror_pose(pose: torch.Tensor) -> torch.Tensor:
    """Axis-angle (x, y, z) of a hand mirrored in x is (x, -y, -z), joint by joint."""
    return pose * torch.tensor([1.0, -1.0, -1.0]).repeat(pose.shape[1] // 3)


# ----------------------------------------------------------------------------------------
# The generated model
# ----------------------------------------------------------------------------------------


def test_generated_model_has_the_official_layout(mano_dir, right_arrays):
    with open(mano_dir / "MANO_RIGHT.pkl", "rb") as stream:
        assert stream.read(2) == b"\x80\x02"  # pickle protocol 2, readable by Python 2 tools
        stream.seek(0)
        raw = pickle.load(stream, encoding="latin1")
    assert set(raw) == {"v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f",
                        "hands_components", "hands_mean", "hands_coeffs", "J", "bs_style", "bs_type"}
    assert scipy.sparse.isspmatrix_csc(raw["J_regressor"]) and raw["f"].dtype == np.uint32
    shapes = {key: value.shape for key, value in raw.items() if hasattr(value, "shape")}
    assert shapes == {"v_template": (778, 3), "shapedirs": (778, 3, 10), "posedirs": (778, 3, 135),
                      "J_regressor": (16, 778), "weights": (778, 16), "kintree_table": (2, 16), "f": (1538, 3),
                      "hands_components": (45, 45), "hands_mean": (45,), "hands_coeffs": (1554, 45), "J": (16, 3)}
    assert (raw["bs_style"], raw["bs_type"]) == ("lbs", "lrotmin")
    assert raw["kintree_table"][0, 0] > 2**31 and list(raw["kintree_table"][0, 1:]) == MANO_PARENTS[1:]

    vertices, faces = right_arrays["v_template"], right_arrays["f"].astype(int)
    assert faces.min() == 0 and faces.max() == 777 and len(np.unique(faces)) == 778
    np.testing.assert_allclose(right_arrays["J"], right_arrays["J_regressor"] @ vertices, atol=1e-12)
    np.testing.assert_allclose(right_arrays["J_regressor"].sum(1), 1.0)
    np.testing.assert_allclose(right_arrays["weights"].sum(1), 1.0)
    np.testing.assert_allclose(right_arrays["hands_components"] @ right_arrays["hands_components"].T, np.eye(45), atol=1e-12)
    # Hand-sized (metres), and the closed surface (a 16-edge wrist hole) faces outwards.
    assert 0.15 < np.linalg.norm(vertices[444] - right_arrays["J"][0]) < 0.21
    edges = {(a, b) for a, b, c in faces for a, b in ((a, b), (b, c), (c, a))}
    assert len(edges) == 3 * len(faces) and sum((b, a) not in edges for a, b in edges) == 16
    corner = vertices[faces]
    assert np.einsum("ij,ij->i", corner[:, 0], np.cross(corner[:, 1], corner[:, 2])).sum() > 0


def test_generated_tips_are_at_the_fingertips(right_arrays):
    vertices, joints = right_arrays["v_template"], right_arrays["J"]
    distal = [15, 3, 6, 12, 9]  # thumb, index, middle, ring, pinky: last joint before the tip
    for finger, (tip, dip) in enumerate(zip(FINGERTIP_IDS["ih26m"], distal)):
        direction = vertices[tip] - joints[dip]
        nearby = np.flatnonzero(np.linalg.norm(vertices - vertices[tip], axis=1) < 0.02)  # this finger only
        assert nearby[np.argmax(vertices[nearby] @ direction)] == tip  # furthest along the last bone
        for convention in ("freihand", "smplx"):
            assert np.linalg.norm(vertices[FINGERTIP_IDS[convention][finger]] - vertices[tip]) < 0.01


def test_generated_left_file_mirrors_the_right(mano_dir, right_arrays):
    left = load_mano_arrays(mano_dir / "MANO_LEFT.pkl")
    np.testing.assert_allclose(left["v_template"], right_arrays["v_template"] * [-1, 1, 1])
    np.testing.assert_array_equal(left["f"], right_arrays["f"][:, [0, 2, 1]])
    np.testing.assert_array_equal(left["shapedirs"], right_arrays["shapedirs"])  # as in MANO v1.2


def test_npz_variant_holds_the_same_arrays(tmp_path, right_arrays):
    write_synthetic_mano(tmp_path, seed=3, file_format="npz")
    from_npz = load_mano_arrays(tmp_path / "MANO_RIGHT.npz")
    for key, value in right_arrays.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(from_npz[key], value, err_msg=key)
        else:
            assert from_npz[key] == value
    assert MANOModel.from_dir(tmp_path, "left").num_betas == 10
    with pytest.raises(ConfigError):
        write_synthetic_mano(tmp_path, file_format="obj")


# ----------------------------------------------------------------------------------------
# The forward pass
# ----------------------------------------------------------------------------------------


def test_rest_pose_is_the_template(mano_dir, right_arrays):
    model = MANOModel.from_dir(mano_dir, "right", flat_hand_mean=True)
    out = model(torch.zeros(2, 48), torch.zeros(2, 10))
    template = torch.tensor(right_arrays["v_template"], dtype=torch.float32)
    torch.testing.assert_close(out.vertices, template.expand(2, -1, -1), rtol=0, atol=1e-7)
    joints = torch.tensor(right_arrays["J_regressor"] @ right_arrays["v_template"], dtype=torch.float32)
    torch.testing.assert_close(out.joints16, joints.expand(2, -1, -1), rtol=0, atol=1e-7)
    assert model.faces.dtype == torch.long and model.faces.shape == (1538, 3) and model.num_vertices == 778
    assert model.parents == MANO_PARENTS


def test_default_pose_is_an_offset_from_the_mean_hand(mano_dir, right_arrays):
    relaxed = MANOModel.from_dir(mano_dir, "right")
    flat = MANOModel.from_dir(mano_dir, "right", flat_hand_mean=True)
    pose, betas, _ = random_inputs()
    shifted = pose.clone()
    shifted[:, 3:] += torch.tensor(right_arrays["hands_mean"], dtype=torch.float32)
    torch.testing.assert_close(relaxed(pose, betas).vertices, flat(shifted, betas).vertices)
    assert (relaxed(torch.zeros(1, 48), torch.zeros(1, 10)).vertices
            - flat(torch.zeros(1, 48), torch.zeros(1, 10)).vertices).abs().max() > 1e-3


def test_vertices_are_affine_in_betas_and_equivariant_to_translation(mano_dir):
    model = MANOModel.from_dir(mano_dir, "right").double()
    pose, betas, transl = (x.double() for x in random_inputs())
    other = torch.flip(betas, dims=[0]) * 0.7
    zero = torch.zeros_like(betas)

    def vertices(b, t=None):
        return model(pose, b, t).vertices

    torch.testing.assert_close(vertices(betas + other) - vertices(zero),
                               (vertices(betas) - vertices(zero)) + (vertices(other) - vertices(zero)))
    assert (vertices(betas) - vertices(zero)).abs().max() > 1e-3
    moved, still = model(pose, betas, transl), model(pose, betas)
    torch.testing.assert_close(moved.vertices, still.vertices + transl[:, None])
    torch.testing.assert_close(moved.joints, still.joints + transl[:, None])
    assert moved.vertices.dtype == torch.float64


def test_global_rotation_turns_the_hand_about_the_wrist(mano_dir):
    model = MANOModel.from_dir(mano_dir, "right").double()
    pose, betas, _ = (x.double() for x in random_inputs())
    unrotated = pose.clone()
    unrotated[:, :3] = 0
    before, after = model(unrotated, betas), model(pose, betas)
    rotation = torch.tensor(Rotation.from_rotvec(pose[:, :3].numpy()).as_matrix())
    wrist = before.joints16[:, :1]
    torch.testing.assert_close(after.vertices, (before.vertices - wrist) @ rotation.transpose(1, 2) + wrist)
    torch.testing.assert_close(after.joints, (before.joints - wrist) @ rotation.transpose(1, 2) + wrist)


def test_one_hot_skinning_moves_each_part_rigidly(right_arrays):
    """With every vertex bound to one joint and no pose correctives, LBS is forward
    kinematics: checked against a chain of scipy rotations."""
    arrays = dict(right_arrays)
    owner = right_arrays["weights"].argmax(1)
    arrays["weights"] = np.eye(16)[owner]
    arrays["posedirs"] = np.zeros_like(right_arrays["posedirs"])
    model = MANOModel(arrays, "right", flat_hand_mean=True).double()
    pose = random_inputs(batch=2, scale=0.5)[0].double()
    out = model(pose, torch.zeros(2, 10, dtype=torch.float64))

    rest = right_arrays["v_template"]
    joints = right_arrays["J_regressor"] @ rest
    for sample in range(2):
        local = Rotation.from_rotvec(pose[sample].reshape(16, 3).numpy()).as_matrix()
        world_rotation, world_position = [], []
        for joint, parent in enumerate(MANO_PARENTS):
            if parent < 0:
                world_rotation.append(local[0])
                world_position.append(joints[0])
            else:
                world_rotation.append(world_rotation[parent] @ local[joint])
                world_position.append(world_position[parent] + world_rotation[parent] @ (joints[joint] - joints[parent]))
        world_rotation, world_position = np.stack(world_rotation), np.stack(world_position)
        expected = np.einsum("vab,vb->va", world_rotation[owner], rest - joints[owner]) + world_position[owner]
        np.testing.assert_allclose(out.vertices[sample].numpy(), expected, atol=1e-7)  # float32 buffers
        np.testing.assert_allclose(out.joints16[sample].numpy(), world_position, atol=1e-7)


def test_pca_with_all_components_equals_the_full_pose(mano_dir, right_arrays):
    full = MANOModel.from_dir(mano_dir, "right")
    pca = MANOModel.from_dir(mano_dir, "right", num_pca_comps=45)
    few = MANOModel.from_dir(mano_dir, "right", num_pca_comps=6)
    pose, betas, transl = random_inputs()
    components = torch.tensor(right_arrays["hands_components"], dtype=torch.float32)
    axis_angle = torch.cat([pose[:, :3], pose[:, 3:] @ components], dim=1)
    torch.testing.assert_close(pca(pose, betas, transl).vertices, full(axis_angle, betas, transl).vertices, rtol=0, atol=1e-5)
    assert few(pose[:, :9], betas).vertices.shape == (3, 778, 3)
    with pytest.raises(ValueError, match="9"):
        few(pose, betas)
    with pytest.raises(ConfigError):
        MANOModel(right_arrays, "right", num_pca_comps=46)


def test_rotation_matrix_poses_are_absolute(mano_dir):
    flat = MANOModel.from_dir(mano_dir, "right", flat_hand_mean=True)
    relaxed = MANOModel.from_dir(mano_dir, "right")
    pose, betas, transl = random_inputs()
    rotations = axis_angle_to_rotmat(pose.reshape(-1, 16, 3))
    expected = flat(pose, betas, transl).vertices
    torch.testing.assert_close(flat(rotations, betas, transl).vertices, expected)
    torch.testing.assert_close(relaxed(rotations, betas, transl).vertices, expected)  # hands_mean not added


def test_left_hand_mirrors_the_right_with_the_shapedirs_fix(mano_dir, tmp_path):
    right = MANOModel.from_dir(mano_dir, "right")
    left = MANOModel.from_dir(mano_dir, "left")
    unfixed = MANOModel.from_dir(mano_dir, "left", fix_left_shapedirs=False)
    torch.testing.assert_close(left.shapedirs[:, 0], -right.shapedirs[:, 0])
    pose, betas, transl = random_inputs()
    expected = right(pose, betas, transl)
    mirrored = left(mirror_pose(pose), betas, transl * MIRROR)
    torch.testing.assert_close(mirrored.vertices, expected.vertices * MIRROR, rtol=0, atol=1e-5)
    torch.testing.assert_close(mirrored.joints, expected.joints * MIRROR, rtol=0, atol=1e-5)
    wrong = unfixed(mirror_pose(pose), betas, transl * MIRROR)
    assert (wrong.vertices - expected.vertices * MIRROR).abs().max() > 1e-3

    # Without the right file the flag decides; a file already fixed is left alone.
    shutil.copy(mano_dir / "MANO_LEFT.pkl", tmp_path / "MANO_LEFT.pkl")
    alone = MANOModel.from_dir(tmp_path, "left")
    torch.testing.assert_close(alone.shapedirs, left.shapedirs)
    left_arrays = load_mano_arrays(tmp_path / "MANO_LEFT.pkl")
    right_arrays = load_mano_arrays(mano_dir / "MANO_RIGHT.pkl")
    once = apply_left_shapedirs_fix(left_arrays, right_arrays)
    np.testing.assert_array_equal(apply_left_shapedirs_fix(once, right_arrays)["shapedirs"], once["shapedirs"])
    np.testing.assert_array_equal(apply_left_shapedirs_fix(left_arrays, None, force=False)["shapedirs"],
                                  left_arrays["shapedirs"])


def test_21_joints_order_and_tips(mano_dir):
    pose, betas, transl = random_inputs()
    for convention, tip_ids in FINGERTIP_IDS.items():
        out = MANOModel.from_dir(mano_dir, "right", fingertips=convention)(pose, betas, transl)
        assert out.joints.shape == (3, 21, 3)
        torch.testing.assert_close(out.joints[:, [4, 8, 12, 16, 20]], out.vertices[:, tip_ids])
        # wrist; thumb, index, middle, ring, pinky from base to tip
        for joints21, joints16 in [(0, 0), ([1, 2, 3], [13, 14, 15]), ([5, 6, 7], [1, 2, 3]),
                                   ([9, 10, 11], [4, 5, 6]), ([13, 14, 15], [10, 11, 12]), ([17, 18, 19], [7, 8, 9])]:
            torch.testing.assert_close(out.joints[:, joints21], out.joints16[:, joints16])
    assert sorted(MANO_TO_21) == list(range(21))
    rooted = align_to_root(out)
    assert rooted.joints[:, 9].abs().max() == 0
    torch.testing.assert_close(rooted.vertices - rooted.joints[:, :1], out.vertices - out.joints[:, :1])
    with pytest.raises(ConfigError, match="freihand"):
        MANOModel.from_dir(mano_dir, "right", fingertips="openpose")


def test_forward_is_differentiable_and_movable(mano_dir):
    model = MANOModel.from_dir(mano_dir, "right")
    assert {"v_template", "shapedirs", "posedirs", "lbs_weights", "faces", "hands_mean"} <= dict(model.named_buffers()).keys()
    pose, betas, transl = random_inputs()
    pose.requires_grad_(True)
    betas.requires_grad_(True)
    pose.data[0] = 0  # the gradient stays finite at the zero rotation
    model(pose, betas, transl).vertices.square().sum().backward()
    assert torch.isfinite(pose.grad).all() and pose.grad.abs().sum() > 0 and betas.grad.abs().sum() > 0
    assert model.to(torch.device("meta")).v_template.device.type == "meta"


# ----------------------------------------------------------------------------------------
# Rotations
# ----------------------------------------------------------------------------------------


def test_axis_angle_to_rotmat_matches_scipy_and_is_stable_at_zero():
    vectors = torch.randn(64, 3, dtype=torch.float64) * 1.5
    vectors[:4] *= torch.tensor([0.0, 1e-9, 1e-5, 1e-3], dtype=torch.float64)[:, None]
    expected = torch.tensor(Rotation.from_rotvec(vectors.numpy()).as_matrix())
    torch.testing.assert_close(axis_angle_to_rotmat(vectors), expected, rtol=0, atol=1e-12)
    zero = torch.zeros(1, 3, requires_grad=True)
    axis_angle_to_rotmat(zero).sum().backward()
    assert torch.isfinite(zero.grad).all()


def test_axis_angle_round_trip_including_zero_and_pi():
    generator = torch.Generator().manual_seed(1)
    axes = torch.nn.functional.normalize(torch.randn(8, 3, generator=generator, dtype=torch.float64), dim=-1)
    angles = torch.tensor([0.0, 1e-8, 1e-4, 0.5, 2.0, math.pi - 1e-3, math.pi - 1e-7, math.pi], dtype=torch.float64)
    vectors = axes * angles[:, None]
    back = rotmat_to_axis_angle(axis_angle_to_rotmat(vectors))
    assert torch.isfinite(back).all()
    torch.testing.assert_close(back[:6], vectors[:6], rtol=0, atol=1e-9)
    # At pi, v and -v are the same rotation; compare the rotations.
    torch.testing.assert_close(axis_angle_to_rotmat(back), axis_angle_to_rotmat(vectors), rtol=0, atol=1e-9)
    torch.testing.assert_close(back.norm(dim=-1), angles, rtol=0, atol=1e-6)
    rotation = torch.tensor(Rotation.random(32, random_state=0).as_matrix())
    torch.testing.assert_close(axis_angle_to_rotmat(rotmat_to_axis_angle(rotation)), rotation, rtol=0, atol=1e-12)
    near = axis_angle_to_rotmat(vectors[[0, 7]].float()).requires_grad_(True)
    rotmat_to_axis_angle(near).sum().backward()
    assert torch.isfinite(near.grad).all()


def test_rot6d_reads_two_columns():
    rotation = torch.tensor(Rotation.random(16, random_state=2).as_matrix(), dtype=torch.float32)
    columns = rotation[..., :2].reshape(16, 6)  # (r00, r01, r10, r11, r20, r21)
    torch.testing.assert_close(rot6d_to_rotmat(columns), rotation, rtol=0, atol=1e-6)
    # Gram-Schmidt: scaling the first column and leaning the second on it changes nothing.
    skewed = rotation[..., :2].clone()
    skewed[..., 0] *= 3.0
    skewed[..., 1] = 0.5 * skewed[..., 1] + 0.8 * rotation[..., 0]
    torch.testing.assert_close(rot6d_to_rotmat(skewed.reshape(16, 6)), rotation, rtol=0, atol=1e-5)
    # pytorch3d's convention (two rows) is a different map.
    rows = rotation[..., :2, :].reshape(16, 6)
    assert (rot6d_to_rotmat(rows) - rotation).abs().max() > 0.1
    # The hand-built case: 90 degrees about z has columns (0, 1, 0) and (-1, 0, 0).
    quarter = torch.tensor([[0.0, -1.0, 1.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(rot6d_to_rotmat(quarter)[0], torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]))


def test_pose_from_rot6d_feeds_mano(mano_dir):
    rotation = torch.tensor(Rotation.random(2 * 16, random_state=3).as_matrix(), dtype=torch.float32).reshape(2, 16, 3, 3)
    rot6d = rotation[..., :2].reshape(2, 96)
    pose = pose_from_rot6d(rot6d)
    assert pose.shape == (2, 48)
    torch.testing.assert_close(axis_angle_to_rotmat(pose.reshape(2, 16, 3)), rotation, rtol=0, atol=1e-5)
    model = MANOModel.from_dir(mano_dir, "right", flat_hand_mean=True)
    betas = torch.zeros(2, 10)
    torch.testing.assert_close(model(pose, betas).vertices, model(rotation, betas).vertices, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------


def write_chumpy_pickle(path: Path, arrays: dict, protocol: int) -> None:
    """A pickle like the official one: ``shapedirs`` a ``chumpy.reordering.Select`` over a
    ``chumpy.ch.Ch``, ``v_template`` a nested ``Ch``. The fake chumpy modules exist only
    while pickling, so reading it back has to go through the stand-ins. Protocol 0 (what
    Python 2 wrote by default) also gets the old module paths of numpy and scipy.sparse."""
    package, ch_module, reordering = (types.ModuleType(name) for name in ("chumpy", "chumpy.ch", "chumpy.reordering"))

    class Ch:
        def __init__(self, x):
            self.x = x
            self._dirty_vars = set()

    class Select:
        def __init__(self, a, idxs, preferred_shape):
            self.a, self.idxs, self.preferred_shape = a, idxs, preferred_shape

    for cls, module in ((Ch, ch_module), (Select, reordering)):
        cls.__module__, cls.__qualname__ = module.__name__, cls.__name__
        setattr(module, cls.__name__, cls)
    shapedirs = arrays["shapedirs"]
    stored = np.ascontiguousarray(shapedirs.transpose(2, 0, 1))  # (10, 778, 3): a different layout
    idxs = np.arange(stored.size).reshape(stored.shape).transpose(1, 2, 0).ravel()
    payload = dict(arrays)
    payload["shapedirs"] = Select(Ch(stored), idxs, shapedirs.shape)
    payload["v_template"] = Ch(Ch(arrays["v_template"]))
    payload["J_regressor"] = scipy.sparse.csc_matrix(arrays["J_regressor"])
    modules = {"chumpy": package, "chumpy.ch": ch_module, "chumpy.reordering": reordering}
    sys.modules.update(modules)
    try:
        data = pickle.dumps(payload, protocol=protocol)
    finally:
        for name in modules:
            del sys.modules[name]
    if protocol == 0:  # text opcodes: module paths are plain lines
        data = data.replace(b"numpy._core.", b"numpy.core.").replace(b"scipy.sparse._csc\n", b"scipy.sparse.csc\n")
        assert b"copy_reg\n_reconstructor" in data.replace(b"copyreg", b"copy_reg") and b"scipy.sparse.csc\n" in data
    path.write_bytes(data)


@pytest.mark.parametrize("protocol", [0, 2])
def test_chumpy_pickles_load_without_chumpy(tmp_path, right_arrays, protocol):
    path = tmp_path / "MANO_RIGHT.pkl"
    write_chumpy_pickle(path, right_arrays, protocol)
    with open(path, "rb") as stream, pytest.raises(ModuleNotFoundError, match="chumpy"):
        pickle.load(stream, encoding="latin1")
    loaded = load_mano_arrays(path)
    for key in ("shapedirs", "v_template", "J_regressor", "posedirs"):
        np.testing.assert_array_equal(loaded[key], right_arrays[key], err_msg=key)
    assert isinstance(loaded["shapedirs"], np.ndarray) and loaded["shapedirs"].dtype == np.float64


class Sneaky:
    def __reduce__(self):
        return (shutil.rmtree, ("/nonexistent-polyvision-test",))


@pytest.mark.parametrize("problem", ["truncated", "not a pickle", "missing key", "bad shape", "code", "not a dict"])
def test_bad_model_files_are_data_errors_naming_the_file(tmp_path, right_arrays, problem):
    path = tmp_path / "MANO_RIGHT.pkl"
    arrays = {key: value for key, value in right_arrays.items() if key != "posedirs" or problem != "missing key"}
    if problem == "bad shape":
        arrays["weights"] = arrays["weights"][:, :15]
    payload = {"code": {"v_template": Sneaky()}, "not a dict": [1, 2, 3]}.get(problem, arrays)
    data = pickle.dumps(payload, protocol=2)
    path.write_bytes({"truncated": data[: len(data) // 2], "not a pickle": b"PK\x03\x04 zip?"}.get(problem, data))
    with pytest.raises(DataError) as caught:
        load_mano_arrays(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    expected = {"missing key": "'posedirs'", "bad shape": "'weights' has shape (778, 15)", "code": "refusing"}
    assert expected.get(problem, "cannot read") in message


def test_missing_files_say_where_to_put_them(tmp_path, mano_dir):
    with pytest.raises(ConfigError, match="MANO_RIGHT.pkl and MANO_LEFT.pkl.*mano_dir"):
        require_mano_dir(None)
    with pytest.raises(DataError, match="no such folder") as caught:
        MANOModel.from_dir(tmp_path / "nowhere", "right")
    assert "\n" not in str(caught.value) and "mano.is.tue.mpg.de" in str(caught.value)
    shutil.copy(mano_dir / "MANO_RIGHT.pkl", tmp_path / "MANO_RIGHT.pkl")
    assert require_mano_dir(tmp_path, "right") == tmp_path
    with pytest.raises(DataError, match=r"put MANO_LEFT\.pkl \(") as caught:
        require_mano_dir(tmp_path, "both")
    assert str(caught.value).startswith(str(tmp_path)) and "\n" not in str(caught.value)
    with pytest.raises(DataError, match="MANO model file not found"):
        load_mano_arrays(tmp_path / "MANO_LEFT.pkl")


# ----------------------------------------------------------------------------------------
# smplx as the oracle
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("side", ["right", "left"])
def test_matches_smplx(mano_dir, side):
    """smplx's MANO on the same file: vertices and its 16 joints, same units (metres). smplx
    does not apply the left ``shapedirs`` fix, so the left hand is compared without it."""
    smplx = pytest.importorskip("smplx", reason="smplx (the test oracle) is not installed")
    path = mano_dir / f"MANO_{side.upper()}.pkl"
    oracle = smplx.MANO(model_path=str(path), is_rhand=side == "right", use_pca=False, flat_hand_mean=False)
    ours = MANOModel.from_dir(mano_dir, side, fix_left_shapedirs=False)
    pose, betas, transl = random_inputs(batch=4, seed=7)
    expected = oracle(betas=betas, global_orient=pose[:, :3], hand_pose=pose[:, 3:], transl=transl)
    out = ours(pose, betas, transl)
    assert expected.joints.shape == (4, 16, 3)
    torch.testing.assert_close(out.vertices, expected.vertices, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.joints16, expected.joints, rtol=0, atol=1e-5)
    extent = (expected.vertices.amax(1) - expected.vertices.amin(1)).amax()
    assert 0.1 < extent < 0.4  # metres, as in the file: neither side rescales


def test_synthetic_arrays_are_deterministic(mano_dir):
    first, second = synthetic_mano_arrays(seed=5), synthetic_mano_arrays(seed=5)
    from_memory = MANOModel(synthetic_mano_arrays(seed=3)[0], "right")  # sparse J_regressor as generated
    torch.testing.assert_close(from_memory.joint_template, MANOModel.from_dir(mano_dir, "right").joint_template)
    np.testing.assert_array_equal(first[0]["shapedirs"], second[0]["shapedirs"])
    assert not np.array_equal(first[0]["shapedirs"], synthetic_mano_arrays(seed=6)[0]["shapedirs"])
    np.testing.assert_array_equal(first[0]["v_template"], synthetic_mano_arrays(seed=6)[0]["v_template"])
