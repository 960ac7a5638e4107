"""The MANO hand model as a differentiable PyTorch layer, and the rotation conversions ACR
needs around it.

MANO (Romero, Tzionas and Black, "Embodied Hands: Modeling and Capturing Hands and Bodies
Together", SIGGRAPH Asia 2017) is a template mesh of 778 vertices deformed by

1. shape blend shapes: ``v_shaped = v_template + shapedirs . betas``;
2. a joint regressor on the shaped mesh: ``J = J_regressor . v_shaped`` (16 joints);
3. pose blend shapes: ``v_posed = v_shaped + posedirs . vec(R_k - I)`` over joints 1..15
   (15 x 9 = 135 features, zero in the rest pose);
4. linear blend skinning along the kinematic tree (SMPL's formulation, Loper et al.,
   "SMPL: A Skinned Multi-Person Linear Model", SIGGRAPH Asia 2015, Sec. 3): each joint's
   world transform ``G_k = G_parent(k) [R_k | J_k - J_parent(k)]``, made relative to the
   rest pose by ``G_k [I | -J_k]``, blended per vertex by the skinning ``weights``.

This module is written from those equations. The model files themselves are licensed by
the MANO authors (https://mano.is.tue.mpg.de, registration required) and never shipped:
:func:`require_mano_dir` says where to put them, :func:`load_mano_arrays` reads the
official ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` (v1.2) without installing ``chumpy``.

Conventions (ACR, Yu et al., CVPR 2023, feeds MANO exactly like this):

- pose ``(B, 48)`` axis-angle: 3 global + 15 x 3 finger joints, the finger part an offset
  from ``hands_mean`` unless ``flat_hand_mean=True``;
- 16 MANO joints: 0 wrist, 1-3 index, 4-6 middle, 7-9 pinky, 10-12 ring, 13-15 thumb
  (MCP/PIP/DIP, thumb CMC/MCP/IP), parents :data:`MANO_PARENTS`;
- 21 joints (FreiHAND / OpenPose order): 0 wrist, 1-4 thumb, 5-8 index, 9-12 middle,
  13-16 ring, 17-20 pinky, each finger base to tip; the tips are mesh vertices
  (:data:`FINGERTIP_IDS`). Joint 9, the middle-finger MCP, is ACR's root
  (:func:`align_to_root`);
- units are those of the model file: metres.
"""
from __future__ import annotations

import importlib
import pickle
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from polyvision.errors import ConfigError, DataError

__all__ = [
    "FINGERTIP_IDS",
    "MANO_PARENTS",
    "MANO_TO_21",
    "NUM_MANO_FACES",
    "NUM_MANO_VERTICES",
    "ROOT_JOINT_21",
    "MANOModel",
    "MANOOutput",
    "align_to_root",
    "apply_left_shapedirs_fix",
    "axis_angle_to_rotmat",
    "load_mano_arrays",
    "pose_from_rot6d",
    "require_mano_dir",
    "rot6d_to_rotmat",
    "rotmat_to_axis_angle",
]

NUM_MANO_VERTICES = 778
NUM_MANO_FACES = 1538
NUM_MANO_JOINTS = 16

# Parent of each of the 16 MANO joints (the model file's ``kintree_table[0]``, whose first
# entry is a large unsigned number meaning "no parent").
MANO_PARENTS: list[int] = [-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14]

# 16 MANO joints + 5 tips (thumb, index, middle, ring, pinky) -> the 21-joint FreiHAND order.
MANO_TO_21: list[int] = [0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20]

# The middle-finger MCP in the 21-joint order: ACR's root for root-relative joints.
ROOT_JOINT_21 = 9

# Fingertip vertex ids (thumb, index, middle, ring, pinky). Datasets place "the tip" on
# slightly different vertices, so the convention is a choice:
# - "ih26m": hassony2/manopth ``manopth/manolayer.py``, the InterHand2.6M evaluation of
#   IntagHand (``apps/eval_interhand.py``) and ACR's right hand. ACR's left-hand copy
#   uses 445 for the middle tip; here the same ids serve both hands (the left MANO mesh
#   has the right one's vertex order, mirrored).
# - "freihand": lmb-freiburg/freihand ``utils/mano_utils.py``.
# - "smplx": vchoutas/smplx ``smplx/vertex_ids.py`` (``VERTEX_IDS["mano"]``).
FINGERTIP_IDS: dict[str, list[int]] = {
    "ih26m": [745, 317, 444, 556, 673],
    "freihand": [744, 320, 443, 555, 672],
    "smplx": [744, 320, 443, 554, 671],
}

# Shapes of the arrays MANOModel needs, None = any size on that axis.
_REQUIRED_SHAPES: dict[str, tuple[int | None, ...]] = {
    "v_template": (NUM_MANO_VERTICES, 3),
    "shapedirs": (NUM_MANO_VERTICES, 3, None),
    "posedirs": (NUM_MANO_VERTICES, 3, 9 * (NUM_MANO_JOINTS - 1)),
    "J_regressor": (NUM_MANO_JOINTS, NUM_MANO_VERTICES),
    "weights": (NUM_MANO_VERTICES, NUM_MANO_JOINTS),
    "kintree_table": (2, NUM_MANO_JOINTS),
    "f": (NUM_MANO_FACES, 3),
}
# Needed only for PCA poses and the mean hand; checked when present.
_OPTIONAL_SHAPES: dict[str, tuple[int | None, ...]] = {
    "hands_components": (None, 45),
    "hands_mean": (45,),
}

_MODEL_SITE = "https://mano.is.tue.mpg.de"


# ----------------------------------------------------------------------------------------
# Rotations
# ----------------------------------------------------------------------------------------


def _skew(vectors: Tensor) -> Tensor:
    """The cross-product matrices ``[v]_x`` of ``(..., 3)`` vectors, ``(..., 3, 3)``."""
    x, y, z = vectors.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*vectors.shape[:-1], 3, 3)


def axis_angle_to_rotmat(axis_angle: Tensor) -> Tensor:
    """Rotation matrices ``(..., 3, 3)`` of axis-angle vectors ``(..., 3)`` (Rodrigues'
    formula ``R = I + sin(t)/t K + (1 - cos t)/t^2 K^2`` with ``K = [r]_x``, ``t = |r|``).

    Small angles use the Taylor series of both coefficients, so the value and the gradient
    are finite at ``r = 0`` (no ``r / |r|``)."""
    angle_sq = (axis_angle * axis_angle).sum(-1, keepdim=True)[..., None]
    small = angle_sq < 1e-6
    # A placeholder angle where the series is used keeps the unused branch finite:
    # torch.where still back-propagates through it.
    safe_sq = torch.where(small, torch.ones_like(angle_sq), angle_sq)
    safe_angle = safe_sq.sqrt()
    sin_term = torch.where(small, 1.0 - angle_sq / 6.0, torch.sin(safe_angle) / safe_angle)
    cos_term = torch.where(small, 0.5 - angle_sq / 24.0, (1.0 - torch.cos(safe_angle)) / safe_sq)
    skew = _skew(axis_angle)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + sin_term * skew + cos_term * (skew @ skew)


def _rotmat_to_quaternion(rotation: Tensor) -> Tensor:
    """Unit quaternions ``(..., 4)`` as ``(w, x, y, z)`` with ``w >= 0``.

    Shepperd's method: of the four ways to solve ``R = R(q)`` for ``q`` (each divides by
    one of ``4w, 4x, 4y, 4z``), the one with the largest divisor is taken, so there is no
    cancellation near 180 degrees where ``w`` -> 0."""
    r = rotation
    r00, r01, r02 = r[..., 0, 0], r[..., 0, 1], r[..., 0, 2]
    r10, r11, r12 = r[..., 1, 0], r[..., 1, 1], r[..., 1, 2]
    r20, r21, r22 = r[..., 2, 0], r[..., 2, 1], r[..., 2, 2]
    # Row i is 4 * q_i * q for the i-th case (i = w, x, y, z); its i-th entry is 4 q_i^2.
    candidates = torch.stack(
        [
            torch.stack([1 + r00 + r11 + r22, r21 - r12, r02 - r20, r10 - r01], dim=-1),
            torch.stack([r21 - r12, 1 + r00 - r11 - r22, r01 + r10, r02 + r20], dim=-1),
            torch.stack([r02 - r20, r01 + r10, 1 - r00 + r11 - r22, r12 + r21], dim=-1),
            torch.stack([r10 - r01, r02 + r20, r12 + r21, 1 - r00 - r11 + r22], dim=-1),
        ],
        dim=-2,
    )
    best = torch.diagonal(candidates, dim1=-2, dim2=-1).argmax(-1)
    chosen = torch.gather(candidates, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    # The largest 4 q_i^2 is at least 1, so this norm never vanishes.
    quaternion = chosen / chosen.norm(dim=-1, keepdim=True)
    sign = torch.where(quaternion[..., :1] < 0, -1.0, 1.0).to(quaternion.dtype)
    return quaternion * sign


def rotmat_to_axis_angle(rotation: Tensor) -> Tensor:
    """Axis-angle vectors ``(..., 3)`` (angle in ``[0, pi]``) of rotation matrices
    ``(..., 3, 3)``, through a quaternion: finite values and gradients at 0 and near pi.
    At exactly pi the axis sign is arbitrary (both vectors give the same rotation)."""
    quaternion = _rotmat_to_quaternion(rotation)
    w, vector = quaternion[..., :1], quaternion[..., 1:]
    sine_half = vector.norm(dim=-1, keepdim=True)
    small = sine_half < 1e-6
    safe_sine = torch.where(small, torch.ones_like(sine_half), sine_half)
    angle = 2.0 * torch.atan2(sine_half, w)
    # angle / sin(angle / 2) -> 2 / cos(angle / 2) = 2 / w as the angle -> 0 (w ~ 1 there).
    scale = torch.where(small, 2.0 / w.clamp_min(1e-6), angle / safe_sine)
    return vector * scale


def rot6d_to_rotmat(rot6d: Tensor) -> Tensor:
    """Rotation matrices ``(..., 3, 3)`` of 6D rotations ``(..., 6)`` (Zhou et al., "On the
    Continuity of Rotation Representations in Neural Networks", CVPR 2019), in the
    convention of HMR/SPIN and ACR: the six numbers read as a 3 x 2 matrix
    (``reshape(3, 2)``), whose two *columns* are Gram-Schmidt orthonormalised into the
    first two columns of ``R``; the third column is their cross product.

    pytorch3d's ``rotation_6d_to_matrix`` uses the two *rows* ``(x[:3], x[3:])`` instead,
    so the two are not interchangeable for trained weights."""
    if rot6d.shape[-1] != 6:
        raise ValueError(f"rot6d_to_rotmat: expected (..., 6), got {tuple(rot6d.shape)}")
    pairs = rot6d.reshape(*rot6d.shape[:-1], 3, 2)
    first, second = pairs[..., 0], pairs[..., 1]
    column0 = torch.nn.functional.normalize(first, dim=-1)
    column1 = torch.nn.functional.normalize(second - (column0 * second).sum(-1, keepdim=True) * column0, dim=-1)
    column2 = torch.linalg.cross(column0, column1, dim=-1)
    return torch.stack([column0, column1, column2], dim=-1)


def pose_from_rot6d(rot6d: Tensor) -> Tensor:
    """ACR's head output ``(B, 16 * 6)`` -> the MANO pose ``(B, 48)`` axis-angle.

    ACR converts each joint's 6D rotation to a matrix and then to axis-angle and feeds that
    to MANO with ``flat_hand_mean=False``, so the 45 finger values are offsets from
    ``hands_mean``, exactly what :meth:`MANOModel.forward` expects by default."""
    if rot6d.ndim != 2 or rot6d.shape[1] != NUM_MANO_JOINTS * 6:
        raise ValueError(f"pose_from_rot6d: expected (B, 96), got {tuple(rot6d.shape)}")
    rotation = rot6d_to_rotmat(rot6d.reshape(-1, NUM_MANO_JOINTS, 6))
    return rotmat_to_axis_angle(rotation).reshape(rot6d.shape[0], NUM_MANO_JOINTS * 3)


# ----------------------------------------------------------------------------------------
# Model files
# ----------------------------------------------------------------------------------------


class _ChumpyStandIn:
    """Whatever ``chumpy`` class a pickle names: keeps the pickled state for :func:`_unwrap`.

    chumpy pickles its objects as ``__dict__`` states; the ones in MANO files are ``Ch``
    (data under ``x``) and reordering nodes such as ``Select`` (``a``, ``idxs``,
    ``preferred_shape``)."""

    chumpy_class = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> _ChumpyStandIn:  # noqa: PYI034 - pickle passes chumpy's arguments
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple):  # (dict, slots) from objects with __slots__
            state = {key: value for part in state if isinstance(part, dict) for key, value in part.items()}
        self.__dict__["state"] = state if isinstance(state, dict) else {"x": state}


def _stand_in(module: str, name: str) -> type:
    return type(name, (_ChumpyStandIn,), {"chumpy_class": f"{module}.{name}"})


def _unwrap(value: Any) -> Any:
    """chumpy stand-ins -> numpy arrays, recursively (other values unchanged)."""
    if not isinstance(value, _ChumpyStandIn):
        return value
    state = value.state
    if "x" in state:
        return np.asarray(_unwrap(state["x"]))
    if "a" in state and "idxs" in state:  # a flat gather, then a reshape
        data = np.asarray(_unwrap(state["a"])).ravel()[np.asarray(_unwrap(state["idxs"])).ravel()]
        shape = state.get("preferred_shape")
        return data.reshape(tuple(np.asarray(_unwrap(shape)).astype(int).tolist())) if shape is not None else data
    if "a" in state and "axes" in state:  # transpose
        axes = state["axes"]
        return np.transpose(np.asarray(_unwrap(state["a"])), None if axes is None else tuple(axes))
    raise ValueError(f"unsupported chumpy object {value.chumpy_class} (fields {sorted(state)})")


class _MANOUnpickler(pickle.Unpickler):
    """Reads Python-2 MANO pickles with an allowlist of classes, so a pickle cannot run code.

    ``chumpy`` (which does not import with current numpy) becomes :class:`_ChumpyStandIn`;
    old module paths of numpy and scipy.sparse are resolved to the current ones."""

    _BUILTINS = frozenset({"object", "set", "frozenset", "list", "dict", "tuple", "slice", "complex", "int", "float",
                           "str", "bytes", "bytearray", "bool", "range"})
    _NUMPY = frozenset({"_reconstruct", "scalar", "ndarray", "dtype", "_frombuffer"})

    def find_class(self, module: str, name: str) -> Any:
        root = module.split(".")[0]
        if root == "chumpy":
            return _stand_in(module, name)
        if module in ("copy_reg", "copyreg") and name in ("_reconstructor", "__newobj__", "__newobj_ex__"):
            import copyreg

            return getattr(copyreg, name)
        if module in ("__builtin__", "builtins") and name in self._BUILTINS:
            import builtins

            return getattr(builtins, name)
        if module == "_codecs" and name == "encode":  # Python 3 pickles of bytes
            import codecs

            return codecs.encode
        if root == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if root == "numpy" and name in self._NUMPY:
            for candidate in ("numpy._core.multiarray", "numpy._core.numeric", "numpy.core.multiarray", "numpy.core.numeric"):
                try:
                    found = getattr(importlib.import_module(candidate), name, None)
                except ImportError:
                    continue
                if found is not None:
                    return found
        if module == "numpy.dtypes" or (module == "numpy" and name.endswith("DType")):
            import numpy.dtypes

            return getattr(numpy.dtypes, name)
        if root == "scipy" and module.startswith("scipy.sparse"):
            import scipy.sparse

            found = getattr(scipy.sparse, name, None)
            if isinstance(found, type):
                return found
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (not part of a MANO model file)")


def _to_numpy(value: Any) -> Any:
    """Dense numpy for arrays, scipy.sparse matrices and chumpy stand-ins; strings as str."""
    value = _unwrap(value)
    if isinstance(value, np.ndarray) and value.dtype == object and value.ndim == 0:
        value = _unwrap(value.item())  # npz files keep non-array values in 0-d object arrays
    if hasattr(value, "toarray") and hasattr(value, "indptr"):
        try:
            return np.asarray(value.toarray())
        except Exception:  # noqa: BLE001 - an old pickled layout: rebuild from its fields
            fields = value.__dict__
            shape = tuple(fields.get("_shape", fields.get("shape")))
            return type(value)((fields["data"], fields["indices"], fields["indptr"]), shape=shape).toarray()
    if isinstance(value, (str, bytes)):
        return value.decode("latin1") if isinstance(value, bytes) else value
    if isinstance(value, np.ndarray) and value.dtype.kind in "US":
        return str(value.item()) if value.ndim == 0 else value
    return np.asarray(value) if isinstance(value, (np.ndarray, list, tuple)) else value


def _check_shapes(arrays: dict[str, Any], source: str | Path) -> None:
    """DataError naming ``source`` for a missing key or a wrong shape."""
    for key, shape in {**_REQUIRED_SHAPES, **_OPTIONAL_SHAPES}.items():
        if key not in arrays:
            if key in _REQUIRED_SHAPES:
                raise DataError(source, f"not a MANO model: no '{key}' array (has {', '.join(sorted(arrays)) or 'nothing'})")
            continue
        value = arrays[key]
        actual = getattr(value, "shape", None)
        if actual is None or len(actual) != len(shape) or any(want not in (None, got) for want, got in zip(shape, actual)):
            expected = "x".join("n" if size is None else str(size) for size in shape)
            raise DataError(source, f"not a MANO model: '{key}' has shape {actual}, expected {expected}")
    if arrays["shapedirs"].shape[2] < 1:
        raise DataError(source, "not a MANO model: 'shapedirs' has no shape components")
    faces = np.asarray(arrays["f"])
    if faces.size and (faces.min() < 0 or faces.max() >= NUM_MANO_VERTICES):
        raise DataError(source, f"not a MANO model: face indices outside 0..{NUM_MANO_VERTICES - 1}")


def load_mano_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a MANO model file (``.pkl`` as released, or ``.npz`` with the same
    keys) as dense numpy, without ``chumpy``: ``v_template``, ``shapedirs``, ``posedirs``,
    ``J_regressor`` (densified), ``weights``, ``kintree_table``, ``f`` and, when present,
    ``hands_components``, ``hands_mean``, ``hands_coeffs``, ``J`` and the strings
    ``bs_style`` / ``bs_type``. A missing, unreadable or incomplete file is a DataError
    naming it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(path, "MANO model file not found")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=True) as archive:
                raw = {key: archive[key] for key in archive.files}
        else:
            with open(path, "rb") as stream:
                raw = _MANOUnpickler(stream, encoding="latin1").load()
        if not isinstance(raw, dict):
            raise TypeError(f"holds a {type(raw).__name__}, not a dict of arrays")
        arrays = {str(key): _to_numpy(value) for key, value in raw.items()}
    except DataError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure here is a bad file
        reason = str(error).splitlines()[0] if str(error) else ""
        raise DataError(path, f"cannot read MANO model file ({type(error).__name__}: {reason})") from None
    _check_shapes(arrays, path)
    return arrays


def _mano_file(directory: Path, side: str) -> Path | None:
    for suffix in (".pkl", ".npz"):
        candidate = directory / f"MANO_{side.upper()}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def require_mano_dir(mano_dir: str | Path | None, side: str = "both") -> Path:
    """``mano_dir`` as a folder holding the MANO file(s) of ``side`` ("right", "left" or
    "both"; ``.pkl`` or ``.npz``), or a one-line error saying which files to put where."""
    if side not in ("right", "left", "both"):
        raise ConfigError(f"side must be 'right', 'left' or 'both', got {side!r}")
    names = {"right": ["MANO_RIGHT.pkl"], "left": ["MANO_LEFT.pkl"], "both": ["MANO_RIGHT.pkl", "MANO_LEFT.pkl"]}[side]
    wanted = " and ".join(names)
    how = f"(MANO v1.2, {_MODEL_SITE}, registration required)"
    if mano_dir is None:
        raise ConfigError(f"MANO model files not found: no mano_dir given; put {wanted} {how} in a folder and pass it as mano_dir")
    directory = Path(mano_dir).expanduser()
    if not directory.is_dir():
        raise DataError(directory, f"MANO model files not found: no such folder; put {wanted} {how} in it and pass it as mano_dir")
    missing = [name for name in names if _mano_file(directory, name[5:-4].lower()) is None]
    if missing:
        raise DataError(directory, f"MANO model files not found: put {' and '.join(missing)} {how} in {directory} and pass it as mano_dir")
    return directory


def apply_left_shapedirs_fix(left: dict[str, np.ndarray], right: dict[str, np.ndarray] | None = None,
                             force: bool = True) -> dict[str, np.ndarray]:
    """A copy of the left-hand arrays with the x row of ``shapedirs`` negated, if needed.

    The released MANO v1.2 ships the right hand's ``shapedirs`` in the left file although the
    left template is mirrored in x, so shape changes bend the left hand the wrong way in x
    (vchoutas/smplx issue #48). InterHand2.6M's fix (facebookresearch/InterHand2.6M
    ``tool/MANO_render/render.py``): negate ``shapedirs[:, 0, :]`` of the left hand when its
    x row still equals the right one (summed absolute difference < 1).

    With ``right`` given, that test decides. Without it the files cannot be compared, and
    ``force`` decides: ``True`` (the default of :meth:`MANOModel.from_dir`) assumes the
    official, unfixed left file; pass ``False`` for a left file that is already fixed."""
    fixed = dict(left)
    if right is not None:
        needed = np.abs(left["shapedirs"][:, 0, :] - right["shapedirs"][:, 0, :]).sum() < 1.0
    else:
        needed = force
    if needed:
        shapedirs = np.array(left["shapedirs"], copy=True)
        shapedirs[:, 0, :] *= -1
        fixed["shapedirs"] = shapedirs
    return fixed


# ----------------------------------------------------------------------------------------
# The layer
# ----------------------------------------------------------------------------------------


class MANOOutput(NamedTuple):
    """MANO outputs, in the model's units (metres), with ``transl`` added."""

    vertices: Tensor  # (B, 778, 3)
    joints: Tensor  # (B, 21, 3), FreiHAND order, tips from FINGERTIP_IDS
    joints16: Tensor  # (B, 16, 3), MANO order


def align_to_root(output: MANOOutput, root: int = ROOT_JOINT_21) -> MANOOutput:
    """``output`` moved so that its 21-joint ``root`` (default 9, the middle-finger MCP,
    ACR's root) is at the origin."""
    offset = output.joints[:, root : root + 1]
    return MANOOutput(output.vertices - offset, output.joints - offset, output.joints16 - offset)


class MANOModel(torch.nn.Module):
    """One MANO hand (right or left) as a batched, differentiable layer.

    Args:
        arrays: the model file's arrays (:func:`load_mano_arrays`; a sparse ``J_regressor``
            is fine), used as given: the left ``shapedirs`` fix is :meth:`from_dir`'s job
            (:func:`apply_left_shapedirs_fix`).
        side: "right" or "left" (informational: both hands share the vertex order).
        flat_hand_mean: False (MANO's and ACR's default): the 45 finger values are offsets
            from the file's ``hands_mean`` (a relaxed, slightly curled hand), so a zero pose
            is that hand. True: a zero pose is the flat template.
        fingertips: which vertices are the 5 tips of the 21 joints (:data:`FINGERTIP_IDS`).
        num_pca_comps: None (default) for full axis-angle finger poses; ``n`` for poses of
            ``3 + n`` numbers, the last ``n`` coefficients of ``hands_components[:n]``.

    All arrays become float32 buffers, so ``.to(device)`` / ``.double()`` move them.
    """

    num_vertices = NUM_MANO_VERTICES

    def __init__(self, arrays: dict[str, np.ndarray], side: str, flat_hand_mean: bool = False,
                 fingertips: str = "ih26m", num_pca_comps: int | None = None) -> None:
        super().__init__()
        if side not in ("right", "left"):
            raise ConfigError(f"MANO side must be 'right' or 'left', got {side!r}")
        if fingertips not in FINGERTIP_IDS:
            raise ConfigError(f"unknown fingertip convention {fingertips!r}; choose one of {', '.join(FINGERTIP_IDS)}")
        arrays = {key: _to_numpy(value) for key, value in arrays.items()}  # also takes sparse / chumpy values
        _check_shapes(arrays, f"MANO {side} arrays")
        needs_pca = num_pca_comps is not None
        if needs_pca and not (isinstance(num_pca_comps, int) and 1 <= num_pca_comps <= 45):
            raise ConfigError(f"num_pca_comps must be None or 1..45, got {num_pca_comps!r}")
        for key in ("hands_mean",) * (not flat_hand_mean) + ("hands_components",) * needs_pca:
            if key not in arrays:
                raise DataError(f"MANO {side} arrays", f"no '{key}' array (needed for this configuration)")
        self.side = side
        self.flat_hand_mean = flat_hand_mean
        self.fingertips = fingertips
        self.num_pca_comps = num_pca_comps

        parents = [int(p) for p in np.asarray(arrays["kintree_table"])[0]]
        parents[0] = -1  # the file stores "no parent" as a large unsigned number
        if any(not 0 <= parent < joint for joint, parent in enumerate(parents) if joint):
            raise DataError(f"MANO {side} arrays", "not a MANO model: 'kintree_table' is not a tree with parents before children")
        self.parents: list[int] = parents

        def as_float(name: str) -> Tensor:
            return torch.as_tensor(np.asarray(arrays[name], dtype=np.float64), dtype=torch.float32)

        template = as_float("v_template")
        shapedirs = as_float("shapedirs")
        regressor = as_float("J_regressor")
        self.register_buffer("v_template", template)
        self.register_buffer("shapedirs", shapedirs)
        # (135, 778 * 3): pose features times this is the flattened corrective offset.
        self.register_buffer("posedirs", as_float("posedirs").reshape(-1, 135).T.contiguous())
        self.register_buffer("lbs_weights", as_float("weights"))
        # Joints are linear in betas, so regress the template and each shape direction once.
        self.register_buffer("joint_template", regressor @ template)
        self.register_buffer("joint_shapedirs", torch.einsum("jv,vcl->jcl", regressor, shapedirs))
        self.register_buffer("faces", torch.as_tensor(np.asarray(arrays["f"], dtype=np.int64)))
        self.register_buffer("fingertip_ids", torch.tensor(FINGERTIP_IDS[fingertips], dtype=torch.long))
        self.register_buffer("to_21", torch.tensor(MANO_TO_21, dtype=torch.long))
        hands_mean = torch.zeros(45) if flat_hand_mean else as_float("hands_mean").reshape(45)
        self.register_buffer("hands_mean", hands_mean)
        if needs_pca:
            self.register_buffer("hands_components", as_float("hands_components")[:num_pca_comps])
        else:
            self.hands_components = None

    @classmethod
    def from_dir(cls, mano_dir: str | Path | None, side: str, fix_left_shapedirs: bool = True,
                 **kwargs: Any) -> MANOModel:
        """The ``side`` hand from ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` (or ``.npz``) in
        ``mano_dir``. For the left hand, the ``shapedirs`` fix is applied when the right
        file is present and both x rows are still equal; with no right file, when
        ``fix_left_shapedirs`` is True (see :func:`apply_left_shapedirs_fix`).
        ``fix_left_shapedirs=False`` never fixes (what smplx and manopth do)."""
        directory = require_mano_dir(mano_dir, side)
        arrays = load_mano_arrays(_mano_file(directory, side))
        if side == "left" and fix_left_shapedirs:
            right_file = _mano_file(directory, "right")
            right = load_mano_arrays(right_file) if right_file is not None else None
            arrays = apply_left_shapedirs_fix(arrays, right)
        return cls(arrays, side, **kwargs)

    @property
    def num_betas(self) -> int:
        return self.shapedirs.shape[-1]

    def extra_repr(self) -> str:
        pca = f", num_pca_comps={self.num_pca_comps}" if self.num_pca_comps else ""
        return f"side={self.side}, flat_hand_mean={self.flat_hand_mean}, fingertips={self.fingertips}{pca}"

    def rotations(self, pose: Tensor) -> Tensor:
        """Per-joint rotation matrices ``(B, 16, 3, 3)`` of a pose as :meth:`forward` takes it
        (axis-angle or PCA coefficients, ``hands_mean`` added unless ``flat_hand_mean``)."""
        if pose.ndim == 4:
            if pose.shape[1:] != (NUM_MANO_JOINTS, 3, 3):
                raise ValueError(f"MANO rotation-matrix pose must be (B, 16, 3, 3), got {tuple(pose.shape)}")
            return pose
        hand_size = self.num_pca_comps or 45
        if pose.ndim != 2 or pose.shape[1] != 3 + hand_size:
            raise ValueError(f"MANO pose must be (B, {3 + hand_size}) axis-angle or (B, 16, 3, 3), got {tuple(pose.shape)}")
        global_orient, hand = pose[:, :3], pose[:, 3:]
        if self.hands_components is not None:
            hand = hand @ self.hands_components
        hand = hand + self.hands_mean
        axis_angle = torch.cat([global_orient, hand], dim=1).reshape(-1, NUM_MANO_JOINTS, 3)
        return axis_angle_to_rotmat(axis_angle)

    def forward(self, pose: Tensor, betas: Tensor, transl: Tensor | None = None) -> MANOOutput:
        """Posed hands.

        Args:
            pose: ``(B, 48)`` axis-angle, 3 global + 45 finger values (offsets from
                ``hands_mean`` unless ``flat_hand_mean``); ``(B, 3 + n)`` with
                ``num_pca_comps=n``; or ``(B, 16, 3, 3)`` absolute per-joint rotation
                matrices, used as they are (no ``hands_mean`` added).
            betas: ``(B, k)`` shape coefficients, ``k <= 10`` (the first ``k`` components).
            transl: optional ``(B, 3)`` translation added to every output.
        """
        dtype = self.v_template.dtype
        pose, betas = pose.to(dtype), betas.to(dtype)
        rotations = self.rotations(pose)
        batch = rotations.shape[0]
        if betas.ndim != 2 or betas.shape[0] != batch or betas.shape[1] > self.num_betas:
            raise ValueError(f"MANO betas must be (B={batch}, <= {self.num_betas}), got {tuple(betas.shape)}")
        num_betas = betas.shape[1]

        shaped = self.v_template + torch.einsum("bl,vcl->bvc", betas, self.shapedirs[..., :num_betas])
        rest_joints = self.joint_template + torch.einsum("bl,jcl->bjc", betas, self.joint_shapedirs[..., :num_betas])

        eye = torch.eye(3, dtype=dtype, device=rotations.device)
        pose_features = (rotations[:, 1:] - eye).reshape(batch, -1)
        posed = shaped + (pose_features @ self.posedirs).reshape(batch, -1, 3)

        # World rotation and position of each joint along the chain (parents come first).
        world_rotations = [rotations[:, 0]]
        world_positions = [rest_joints[:, 0]]
        for joint in range(1, NUM_MANO_JOINTS):
            parent = self.parents[joint]
            bone = rest_joints[:, joint] - rest_joints[:, parent]
            world_rotations.append(world_rotations[parent] @ rotations[:, joint])
            world_positions.append(world_positions[parent] + (world_rotations[parent] @ bone[..., None])[..., 0])
        world_rotation = torch.stack(world_rotations, dim=1)
        joints16 = torch.stack(world_positions, dim=1)

        # G_k [I | -J_k]: rest-pose points -> posed points for a vertex bound to joint k alone.
        offsets = joints16 - (world_rotation @ rest_joints[..., None])[..., 0]
        transforms = torch.cat([world_rotation, offsets[..., None]], dim=-1).reshape(batch, NUM_MANO_JOINTS, 12)
        blended = torch.einsum("vj,bjk->bvk", self.lbs_weights, transforms).reshape(batch, -1, 3, 4)
        vertices = (blended[..., :3] @ posed[..., None])[..., 0] + blended[..., 3]

        if transl is not None:
            transl = transl.to(dtype).reshape(batch, 1, 3)
            vertices = vertices + transl
            joints16 = joints16 + transl
        tips = vertices[:, self.fingertip_ids]
        joints = torch.cat([joints16, tips], dim=1)[:, self.to_21]
        return MANOOutput(vertices=vertices, joints=joints, joints16=joints16)
