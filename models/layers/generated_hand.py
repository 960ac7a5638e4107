"""A generated hand-like model in the MANO file format, for synthetic data and tests.

The MANO licence (https://mano.is.tue.mpg.de) forbids shipping the real model, so
:func:`write_synthetic_mano` builds one procedurally: **hand-like, NOT MANO**. It has the
official files' keys, dtypes and shapes (778 vertices, 1538 faces, 16 joints in MANO's
kinematic tree, 10 shape and 135 pose blend shapes, a 45-D pose PCA), so every code path
that reads ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` runs on it, and its silhouettes look like
a hand. Its numbers mean nothing: poses and shapes fitted to it do not transfer to MANO.

Geometry of the right hand (metres): the wrist opening is centred near the origin, the
fingers point along +y, the palm faces -z and the thumb sticks out on the -x side; about
18 cm from the wrist to the middle fingertip. The surface is one connected mesh: a
rounded palm box, open at the wrist (a 14-edge hole, which is what makes 778 vertices
give exactly 1538 triangles: F = 2V - 2 - hole), with five tubes extruded from it. Each
joint sits at the centre of a ring of vertices, and ``J_regressor`` averages that ring.

The vertices at the five tips (thumb, index, middle, ring, pinky) are the "ih26m"
fingertip ids 745, 317, 444, 556, 673; the "freihand" and "smplx" ids (744, 320, 443,
555/554, 672/671) and ACR's left middle tip 445 are on the last ring below each tip,
5-8 mm away: only the "ih26m" ids are the exact tips of this model.

The left file is the right one mirrored in x (faces re-wound so normals still point out,
pose-space arrays mirrored to match) except ``shapedirs``, which is copied unchanged, as
in the released MANO v1.2 files, so the left-hand ``shapedirs`` fix applies to it.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse

from polyvision.errors import ConfigError
from polyvision.models.layers.mano import FINGERTIP_IDS, MANO_PARENTS, NUM_MANO_FACES, NUM_MANO_VERTICES

__all__ = ["synthetic_mano_arrays", "write_synthetic_mano"]

# Palm box in lattice cells: width (x), length (y), thickness (z).
_CELLS = (11, 8, 4)
_PALM_WIDTH, _WRIST_WIDTH, _PALM_LENGTH, _PALM_THICKNESS = 0.085, 0.062, 0.095, 0.028

# name, MANO joints (base to tip), the box face it grows from as (axis, side), the first
# cell of its 2 x 2 patch on that face's (u, v) grid, direction, bone lengths (m), tube
# radii at base and tip (m), number of rings. Vertex count: 317 on the palm box, 57 rings
# of 8 and 5 tips make 778.
_FINGERS = [
    ("thumb", [13, 14, 15], (0, 0), (1, 1), (-0.70, 0.65, -0.30), (0.034, 0.029, 0.024), (0.0105, 0.0092), 11),
    ("index", [1, 2, 3], (1, 1), (1, 0), (-0.10, 1.0, 0.0), (0.037, 0.023, 0.019), (0.0085, 0.0076), 11),
    ("middle", [4, 5, 6], (1, 1), (1, 3), (-0.02, 1.0, 0.0), (0.041, 0.026, 0.020), (0.0088, 0.0078), 13),
    ("ring", [10, 11, 12], (1, 1), (1, 6), (0.06, 1.0, 0.0), (0.038, 0.024, 0.019), (0.0083, 0.0074), 12),
    ("pinky", [7, 8, 9], (1, 1), (1, 9), (0.14, 1.0, 0.0), (0.031, 0.019, 0.017), (0.0072, 0.0064), 10),
]
_FINGER_ORDER = ["thumb", "index", "middle", "ring", "pinky"]  # FINGERTIP_IDS order
# Wrist opening: cells of the bottom face (axis y, side 0) at u (z) 0..2, v (x) 3..7.
# Its 16 boundary edges are what makes 778 vertices give exactly 1538 triangles.
_WRIST_PATCH = ((1, 0), (0, 3), (3, 5))


@dataclass
class _Mesh:
    """Quads over vertex ids, and what each vertex is: the palm or (finger, arc length)."""

    positions: list[np.ndarray] = field(default_factory=list)
    finger: list[int] = field(default_factory=list)  # -1 = palm
    arc: list[float] = field(default_factory=list)
    quads: list[tuple[int, int, int, int]] = field(default_factory=list)

    def add(self, position: np.ndarray, finger: int = -1, arc: float = 0.0) -> int:
        self.positions.append(np.asarray(position, dtype=np.float64))
        self.finger.append(finger)
        self.arc.append(arc)
        return len(self.positions) - 1


def _face_axes(axis: int) -> tuple[int, int]:
    """The in-face axes (u, v) with u x v = +axis, so (u, v) cells listed counter-clockwise
    face +axis."""
    return (axis + 1) % 3, (axis + 2) % 3


def _palm_position(lattice: np.ndarray) -> np.ndarray:
    """A lattice point of the palm box -> metres: a box narrowing towards the wrist, its
    cross-section rounded into a superellipse |x|^4 + |z|^4 = 1."""
    nx, ny, nz = _CELLS
    height = lattice[1] / ny
    blend = height * height * (3 - 2 * height)  # smoothstep: wide at the knuckles
    half_width = 0.5 * (_WRIST_WIDTH + (_PALM_WIDTH - _WRIST_WIDTH) * blend)
    half_thickness = 0.5 * _PALM_THICKNESS * (0.8 + 0.2 * blend)
    u, v = 2 * lattice[0] / nx - 1, 2 * lattice[2] / nz - 1
    norm4 = (u**4 + v**4) ** 0.25
    scale = max(abs(u), abs(v)) / norm4 if norm4 > 0 else 0.0
    return np.array([u * scale * half_width, height * _PALM_LENGTH, v * scale * half_thickness])


def _face_point(axis: int, side: int, u: int, v: int) -> tuple[int, int, int]:
    """The lattice point at (u, v) on the box face normal to ``axis``."""
    axis_u, axis_v = _face_axes(axis)
    point = [0, 0, 0]
    point[axis], point[axis_u], point[axis_v] = side * _CELLS[axis], u, v
    return tuple(point)


def _cell_corners(axis: int, side: int, u: int, v: int) -> list[tuple[int, int, int]]:
    """Corners of face cell (u, v), counter-clockwise seen from outside the box."""
    corners = [_face_point(axis, side, u + du, v + dv) for du, dv in ((0, 0), (1, 0), (1, 1), (0, 1))]
    return corners if side else corners[::-1]


def _patch_loop(axis: int, side: int, start: tuple[int, int], size: tuple[int, int]) -> list[tuple[int, int, int]]:
    """Boundary lattice points of a patch of face cells, counter-clockwise seen from outside."""
    (u0, v0), (su, sv) = start, size
    walk = [(u0 + i, v0) for i in range(su)] + [(u0 + su, v0 + j) for j in range(sv)]
    walk += [(u0 + su - i, v0 + sv) for i in range(su)] + [(u0, v0 + sv - j) for j in range(sv)]
    loop = [_face_point(axis, side, u, v) for u, v in walk]
    return loop if side else loop[::-1]


def _build_right_hand() -> tuple[_Mesh, dict[int, list[int]], dict[str, int], list[float]]:
    """The right-hand mesh, the rings the joint regressor averages (by MANO joint), the tip
    vertex of each finger, and each joint's arc length along its finger."""
    mesh = _Mesh()
    (wrist_axis, wrist_side), wrist_start, wrist_size = _WRIST_PATCH
    patches = [(wrist_axis, wrist_side, wrist_start, wrist_size)]
    patches += [(axis, side, start, (2, 2)) for _, _, (axis, side), start, *_ in _FINGERS]
    removed = {(axis, side, start[0] + du, start[1] + dv)
               for axis, side, start, size in patches for du in range(size[0]) for dv in range(size[1])}
    cells = []
    for axis in range(3):
        axis_u, axis_v = _face_axes(axis)
        for side in (0, 1):
            cells += [(axis, side, u, v) for u in range(_CELLS[axis_u]) for v in range(_CELLS[axis_v])
                      if (axis, side, u, v) not in removed]
    # Only lattice points on a remaining cell become vertices (the patches' inner points go).
    corners = {cell: _cell_corners(*cell) for cell in cells}
    index = {point: mesh.add(_palm_position(np.array(point, dtype=np.float64)))
             for point in sorted({point for points in corners.values() for point in points})}
    mesh.quads += [tuple(index[point] for point in points) for points in corners.values()]

    rings: dict[int, list[int]] = {0: [index[point] for point in _patch_loop(wrist_axis, wrist_side, wrist_start, wrist_size)]}
    tips: dict[str, int] = {}
    joint_arcs = [0.0] * 16
    for finger_id, (name, joints, (axis, side), start, direction, bones, radii, num_rings) in enumerate(_FINGERS):
        loop_points = _patch_loop(axis, side, start, (2, 2))
        base = [index[point] for point in loop_points]
        axis_u, axis_v = _face_axes(axis)
        base_positions = np.array([mesh.positions[vertex] for vertex in base])
        origin = base_positions.mean(0)
        direction = np.asarray(direction, dtype=np.float64) / np.linalg.norm(direction)
        # Cross-section frame: the face's u and v axes made perpendicular to the finger, so
        # every ring keeps the base loop's orientation (its quads face outwards).
        frame = []
        for face_axis in (axis_u, axis_v):
            unit = np.eye(3)[face_axis] - direction[face_axis] * direction
            frame.append(unit / np.linalg.norm(unit))
        centre = np.mean(loop_points, axis=0)
        angles = [np.arctan2(point[axis_v] - centre[axis_v], point[axis_u] - centre[axis_u]) for point in loop_points]
        base_radii = [np.abs((base_positions - origin) @ unit).max() for unit in frame]

        length = float(sum(bones))
        joint_at = [0.0, bones[0], bones[0] + bones[1]]
        # Rings evenly spaced up to just below the tip, the nearest ones moved onto the two
        # inner joints so that each joint is the centre of a ring.
        arcs = list(np.linspace(0.0, length - 0.4 * radii[1], num_rings + 1)[1:])
        for joint_arc in joint_at[1:]:
            arcs[int(np.argmin(np.abs(np.asarray(arcs) - joint_arc)))] = joint_arc

        def radius_at(arc: float, which: int, radii=radii, length=length, base_radii=base_radii) -> float:
            radius = radii[0] + (radii[1] - radii[0]) * arc / length
            radius *= (1.0, 0.9)[which]  # fingers are a little flatter than wide
            flare = max(0.0, 1.0 - arc / 0.012) ** 2  # widen into the palm over 12 mm
            radius += (base_radii[which] - radius) * flare
            from_tip = length - arc
            if from_tip < radii[1]:  # a hemispherical tip
                radius *= np.sqrt(max(0.0, 1.0 - ((radii[1] - from_tip) / radii[1]) ** 2))
            return radius

        previous = base
        for arc in arcs:
            point = origin + arc * direction
            ring = [mesh.add(point + radius_at(arc, 0) * np.cos(angle) * frame[0]
                             + radius_at(arc, 1) * np.sin(angle) * frame[1], finger_id, arc) for angle in angles]
            mesh.quads += [(previous[m], previous[(m + 1) % 8], ring[(m + 1) % 8], ring[m]) for m in range(8)]
            for joint, joint_arc in zip(joints[1:], joint_at[1:]):
                if arc == joint_arc:
                    rings[joint] = ring
            previous = ring
        rings[joints[0]] = base
        # The cap is the patch's own four cells: each spans a corner of the 8-vertex loop,
        # its two neighbours, and the (moved) centre, now the tip.
        tip = mesh.add(origin + length * direction, finger_id, length)
        tips[name] = tip
        for m, point in enumerate(loop_points):
            if point[axis_u] != centre[axis_u] and point[axis_v] != centre[axis_v]:
                mesh.quads.append((previous[m - 1], previous[m], previous[(m + 1) % 8], tip))
        for joint, joint_arc in zip(joints, joint_at):
            joint_arcs[joint] = joint_arc
    return mesh, rings, tips, joint_arcs


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _skinning_weights(mesh: _Mesh, joint_arcs: list[float]) -> np.ndarray:
    """(778, 16): the palm follows the wrist; a finger vertex follows the bone it lies on,
    blended over about +-5 mm around each joint."""
    weights = np.zeros((len(mesh.positions), 16))
    finger = np.asarray(mesh.finger)
    arc = np.asarray(mesh.arc)
    weights[finger < 0, 0] = 1.0
    for finger_id, (_, joints, *_rest) in enumerate(_FINGERS):
        mask = finger == finger_id
        starts = [-np.inf] + [joint_arcs[joint] for joint in joints] + [np.inf]
        owners = [0, *joints]
        width = 0.0025
        for owner, start, end in zip(owners, starts[:-1], starts[1:]):
            weights[mask, owner] = _sigmoid((arc[mask] - start) / width) - _sigmoid((arc[mask] - end) / width)
    return weights / weights.sum(1, keepdims=True)


def synthetic_mano_arrays(seed: int = 0) -> tuple[dict[str, object], dict[str, object]]:
    """The (right, left) arrays of the generated model, as the files hold them
    (``J_regressor`` a scipy.sparse CSC matrix)."""
    rng = np.random.default_rng(seed)
    mesh, rings, tips, joint_arcs = _build_right_hand()
    positions = np.stack(mesh.positions)
    quads = np.asarray(mesh.quads)
    faces = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    if len(positions) != NUM_MANO_VERTICES or len(faces) != NUM_MANO_FACES:  # pragma: no cover - a design error
        raise AssertionError(f"generated hand has {len(positions)} vertices and {len(faces)} faces")

    # Renumber so the tips (and the vertices next to them) carry the conventional ids.
    fixed: dict[int, int] = {}
    finger_names = [finger[0] for finger in _FINGERS]
    for finger_number, name in enumerate(_FINGER_ORDER):
        wanted = [FINGERTIP_IDS["ih26m"][finger_number]]
        wanted += sorted({ids[finger_number] for ids in FINGERTIP_IDS.values()} - set(wanted))
        if name == "middle":
            wanted.append(445)  # ACR's left middle tip
        tip = tips[name]
        ring_vertices = [vertex for vertex in range(len(positions))
                         if mesh.finger[vertex] == finger_names.index(name) and vertex != tip]
        last_arc = max(mesh.arc[vertex] for vertex in ring_vertices)
        last_ring = [vertex for vertex in ring_vertices if mesh.arc[vertex] == last_arc]
        for new_id, old_id in zip(wanted, [tip, *last_ring]):
            fixed[old_id] = new_id
    free_new = iter(sorted(set(range(NUM_MANO_VERTICES)) - set(fixed.values())))
    new_of_old = np.array([fixed[old] if old in fixed else next(free_new) for old in range(NUM_MANO_VERTICES)])
    order = np.argsort(new_of_old)  # order[new] = old

    template = positions[order]
    faces = new_of_old[faces].astype(np.uint32)
    finger = np.asarray(mesh.finger)[order]
    arc = np.asarray(mesh.arc)[order]
    weights = _skinning_weights(mesh, joint_arcs)[order]

    regressor = np.zeros((16, NUM_MANO_VERTICES))
    for joint, ring in rings.items():
        regressor[joint, new_of_old[ring]] = 1.0 / len(ring)
    joints = regressor @ template

    shapedirs = _shape_directions(template, finger, arc, joints, rng)
    posedirs = _pose_directions(weights, rng)
    components = np.linalg.qr(rng.normal(size=(45, 45)))[0].T  # rows orthonormal
    hands_mean = _mean_curl(rng)
    coefficients = rng.normal(scale=0.6, size=(1554, 45))
    kintree = np.array([[2**32 - 1, *MANO_PARENTS[1:]], list(range(16))], dtype=np.int64)

    right = {
        "v_template": template,
        "shapedirs": shapedirs,
        "posedirs": posedirs,
        "J_regressor": scipy.sparse.csc_matrix(regressor),
        "weights": weights,
        "kintree_table": kintree,
        "f": faces,
        "hands_components": components,
        "hands_mean": hands_mean,
        "hands_coeffs": coefficients,
        "J": joints,
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }
    left = dict(right)
    mirror = np.array([-1.0, 1.0, 1.0])
    # An axis-angle vector mirrored in x is (x, -y, -z); R - I mirrored is M (R - I) M.
    pose_sign = np.tile(-mirror, 15)
    entry_sign = np.einsum("a,b->ab", mirror, mirror).ravel()
    left.update(
        v_template=template * mirror,
        J=joints * mirror,
        f=faces[:, [0, 2, 1]].copy(),
        posedirs=posedirs * mirror[None, :, None] * np.tile(entry_sign, 15)[None, None, :],
        hands_components=components * pose_sign,
        hands_mean=hands_mean * pose_sign,
        hands_coeffs=coefficients,
        J_regressor=scipy.sparse.csc_matrix(regressor),
    )
    return right, left


def _shape_directions(template: np.ndarray, finger: np.ndarray, arc: np.ndarray, joints: np.ndarray,
                      rng: np.random.Generator) -> np.ndarray:
    """(778, 3, 10) smooth shape changes, a few millimetres per unit beta: overall size,
    finger thickness, finger length, palm width, palm length, then five gentle random
    bends."""
    directions = np.zeros((NUM_MANO_VERTICES, 3, 10))
    wrist = joints[0]
    directions[:, :, 0] = 0.04 * (template - wrist)
    for finger_id, (_, finger_joints, *_rest) in enumerate(_FINGERS):
        mask = finger == finger_id
        base = joints[finger_joints[0]]
        axis = joints[finger_joints[-1]] - base
        axis /= np.linalg.norm(axis)
        offset = template[mask] - base
        radial = offset - np.outer(offset @ axis, axis)
        directions[mask, :, 1] = 0.12 * radial
        directions[mask, :, 2] = 0.08 * np.outer(arc[mask], axis)
    palm = finger < 0
    directions[palm, 2, 1] = 0.12 * template[palm, 2]
    directions[:, 0, 3] = 0.05 * template[:, 0]
    directions[:, 1, 4] = 0.04 * template[:, 1]
    for component in range(5, 10):
        frequency = rng.normal(size=3) * 8.0
        phase = rng.uniform(0, 2 * np.pi)
        displacement = rng.normal(size=3)
        displacement *= 0.002 / np.linalg.norm(displacement)
        directions[:, :, component] = np.sin(template @ frequency + phase)[:, None] * displacement
    return directions


def _pose_directions(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(778, 3, 135) small correctives: joint k's nine features move only the vertices
    skinned to k or its parent (at most about a millimetre)."""
    posedirs = rng.normal(scale=3e-4, size=(NUM_MANO_VERTICES, 3, 135))
    for joint in range(1, 16):
        near = weights[:, joint] + weights[:, MANO_PARENTS[joint]]
        posedirs[:, :, 9 * (joint - 1) : 9 * joint] *= near[:, None, None]
    return posedirs


def _mean_curl(rng: np.random.Generator) -> np.ndarray:
    """The relaxed hand (45,): fingers bent towards the palm (-z), i.e. about -x, growing
    from the MCP to the DIP; the thumb slightly across the palm."""
    curl = np.zeros((15, 3))
    for joint in range(1, 13):
        curl[joint - 1, 0] = -(0.15 + 0.08 * ((joint - 1) % 3))
    curl[12:15] = [[0.05, 0.15, -0.1], [0.0, 0.1, -0.15], [0.0, 0.05, -0.1]]
    return (curl + rng.normal(scale=0.02, size=curl.shape)).ravel()


def write_synthetic_mano(directory: str | Path, seed: int = 0, file_format: str = "pkl") -> Path:
    """Write ``MANO_RIGHT.<fmt>`` and ``MANO_LEFT.<fmt>`` of the generated hand-like model
    (NOT MANO, see the module docstring) into ``directory`` (created) and return it.

    ``pkl``: a pickle (protocol 2) of a dict of numpy arrays with ``J_regressor`` as
    scipy.sparse CSC, like the official files minus chumpy. ``npz``: the same keys with
    ``J_regressor`` dense and the strings as 0-d arrays. Only ``seed`` changes the random
    parts (blend shapes, pose PCA); the mesh is always the same."""
    if file_format not in ("pkl", "npz"):
        raise ConfigError(f"file_format must be 'pkl' or 'npz', got {file_format!r}")
    directory = Path(directory).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    for side, arrays in zip(("RIGHT", "LEFT"), synthetic_mano_arrays(seed)):
        path = directory / f"MANO_{side}.{file_format}"
        if file_format == "pkl":
            with open(path, "wb") as stream:
                pickle.dump(arrays, stream, protocol=2)
        else:
            dense = {key: value.toarray() if scipy.sparse.issparse(value) else np.asarray(value)
                     for key, value in arrays.items()}
            np.savez(path, **dense)
    return directory
