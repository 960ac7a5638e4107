"""Headless rendering of hand meshes: part-segmentation targets and visualisations.

Two renderers, neither needs OpenGL:

- :func:`rasterize_labels` (on :func:`rasterize_faces`): a small torch z-buffer rasteriser that
  turns projected meshes into an integer label map, the part-segmentation target of ACR
  (Yu et al., "ACR: Attention Collaboration-based Regressor for Arbitrary Two-Hand
  Reconstruction", CVPR 2023): 33 channels, 0 background, 1-16 right-hand parts, 17-32
  left-hand parts (:func:`mano_part_labels`, :func:`two_hand_face_labels`).
- :func:`draw_meshes` / :func:`render_silhouette` / :func:`draw_skeleton`: a painter's
  algorithm with flat Lambertian shading drawn by PIL, for overlays on video frames and
  for synthetic datasets.

Coordinates (all functions): ``x`` to the right, ``y`` down, in pixels. Pixel ``(row i,
column j)`` is the square ``[j, j + 1) x [i, i + 1)`` and is sampled at its centre
``(j + 0.5, i + 0.5)``, so an image of width ``W`` spans ``0 <= x <= W``; this is what
mapping normalised coordinates with ``(u + 1) * W / 2`` gives. (OpenCV's convention puts
pixel centres at integers: add 0.5 to such coordinates first.) Each vertex carries a third
value, its depth ``z``: smaller is closer to the camera. Only the order of depths matters
for visibility; the shading of :func:`draw_meshes` also uses their scale, so give ``z`` in
the units of ``x, y`` (weak perspective: the same scale as ``x, y``; full perspective:
camera ``z`` times ``focal / mean depth``). Nothing is clipped against a near plane: keep
meshes in front of the camera.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

NUM_MANO_PARTS = 16  # MANO's 16 skinning joints: the wrist and three per finger
NUM_TWO_HAND_CLASSES = 1 + 2 * NUM_MANO_PARTS  # ACR's segmentation: background + right parts + left parts

# ACR's visualisation colours (ZhengdiYu/Arbitrary-Hands-3D-Reconstruction, acr/visualization.py), RGB in 0..1.
LEFT_HAND_RGB = (0.46, 0.59, 0.64)
RIGHT_HAND_RGB = (0.94, 0.71, 0.53)

# The 21-joint hand skeleton in FreiHAND order (Zimmermann et al., ICCV 2019): 0 wrist, then
# four joints per finger from the palm outwards: 1-4 thumb, 5-8 index, 9-12 middle, 13-16 ring,
# 17-20 pinky. Bones: wrist -> each finger's first joint, then along each finger.
HAND_BONES: tuple[tuple[int, int], ...] = tuple(
    bone
    for first in (1, 5, 9, 13, 17)
    for bone in ((0, first), (first, first + 1), (first + 1, first + 2), (first + 2, first + 3))
)

ArrayLike = np.ndarray | Tensor
RGB = tuple[float, float, float]
# (vertices_px (V, 3) with depth, faces (F, 3), colour 0..1: one RGB or one per face (F, 3))
Mesh = tuple[ArrayLike, ArrayLike, RGB | ArrayLike]

# Work per rasteriser chunk: faces x padded bounding-box pixels. Bounds the memory of the
# vectorised coverage test (a few float64 tensors of this size) without many small chunks.
RASTER_CHUNK_ELEMENTS = 1 << 20


# ---------------------------------------------------------------------------------------------
# z-buffer rasteriser


def _mesh_list(vertices_px: Tensor | Sequence[ArrayLike]) -> list[Tensor]:
    if isinstance(vertices_px, (Tensor, np.ndarray)) and vertices_px.ndim == 2:
        vertices_px = [vertices_px]  # one mesh given without the mesh axis
    meshes = [torch.as_tensor(v) for v in vertices_px]
    for vertices in meshes:
        if vertices.ndim != 2 or vertices.shape[1] != 3:
            raise ValueError(f"vertices_px: every mesh must be (V, 3) = pixel x, y and depth; got {tuple(vertices.shape)}")
    return meshes


def _per_mesh(values: ArrayLike | Sequence[ArrayLike], count: int, name: str, shared_ndim: int) -> list[Tensor]:
    """One tensor per mesh from a shared tensor (``shared_ndim`` dims), a stacked one or a list."""
    if isinstance(values, (Tensor, np.ndarray)) and values.ndim == shared_ndim:
        return [torch.as_tensor(values)] * count
    per_mesh = [torch.as_tensor(v) for v in values]
    if len(per_mesh) != count:
        raise ValueError(f"{name}: {len(per_mesh)} entries for {count} meshes")
    return per_mesh


def _triangles(vertices_px: Tensor | Sequence[ArrayLike], faces: ArrayLike | Sequence[ArrayLike]) -> tuple[Tensor, list[int]]:
    """All meshes' triangles concatenated, (T, 3 corners, xyz), and the face count of each mesh."""
    meshes = _mesh_list(vertices_px)
    face_sets = _per_mesh(faces, len(meshes), "faces", shared_ndim=2)
    triangles, counts = [], []
    for vertices, mesh_faces in zip(meshes, face_sets):
        if mesh_faces.ndim != 2 or mesh_faces.shape[1] != 3:
            raise ValueError(f"faces must be (F, 3) vertex indices; got {tuple(mesh_faces.shape)}")
        triangles.append(vertices[mesh_faces.to(device=vertices.device, dtype=torch.long)])
        counts.append(len(mesh_faces))
    return torch.cat(triangles).to(torch.float64), counts


def _is_top_left(dx: Tensor, dy: Tensor) -> Tensor:
    """Which edges (direction ``dx, dy``, interior on their positive side) own the pixel
    centres lying exactly on them. With ``y`` down, a left edge runs upwards (``dy < 0``) and
    a top edge is horizontal and runs to the right; every other edge leaves its boundary
    pixels to the neighbouring triangle, so a pixel on an edge shared by two triangles is
    covered exactly once."""
    return (dy < 0) | ((dy == 0) & (dx > 0))


@torch.no_grad()
def rasterize_faces(vertices_px: Tensor | Sequence[ArrayLike], faces: ArrayLike | Sequence[ArrayLike],
                    height: int, width: int) -> tuple[Tensor, Tensor]:
    """Which face is visible at each pixel centre, by a z-buffer over several meshes.

    Args:
        vertices_px: ``(N, V, 3)`` or a list of ``(V_i, 3)``: each mesh's vertices as pixel
            ``x, y`` and depth ``z`` (smaller = closer; see the module docstring).
        faces: ``(F, 3)`` vertex indices shared by all meshes, or one ``(F_i, 3)`` per mesh.
        height, width: the size of the output.

    Returns:
        ``face_index`` ``(H, W)`` long: index into the concatenation of all meshes' faces
        (mesh 0's faces first), ``-1`` where no face covers the pixel centre; and ``depth``
        ``(H, W)`` float64: the visible surface's depth, ``inf`` on the background.

    A pixel is covered when its centre lies inside the triangle; centres exactly on an edge
    follow the top-left rule (:func:`_is_top_left`), as in Direct3D, so triangles sharing an
    edge never both cover a pixel and leave no gap. Both sides of a triangle are drawn (no
    back-face culling): labels want whatever surface is nearest. Depth is interpolated
    linearly in screen space from the three corners (exact for weak perspective, a close
    approximation for the small depth range of a hand under perspective). Equal depths go to
    the face listed first. The coverage test is the edge-function test of Pineda ("A Parallel
    Algorithm for Polygon Rasterization", SIGGRAPH 1988), vectorised over faces: faces are
    sorted by bounding-box size and tested in chunks against the pixel centres of their
    padded boxes. Runs on the device of ``vertices_px``; no gradients.
    """
    triangles, _ = _triangles(vertices_px, faces)
    device = triangles.device
    face_index = torch.full((height * width,), -1, dtype=torch.long, device=device)
    depth = torch.full((height * width,), float("inf"), dtype=torch.float64, device=device)
    if len(triangles) == 0:
        return face_index.view(height, width), depth.view(height, width)

    face_ids = torch.arange(len(triangles), device=device)
    # Give every triangle the same winding (positive doubled area in the edge function below:
    # clockwise as seen on the y-down screen), so "inside" is the positive side of all three edges.
    x, y = triangles[..., 0], triangles[..., 1]
    doubled_area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (y[:, 1] - y[:, 0]) * (x[:, 2] - x[:, 0])
    clockwise = doubled_area < 0
    triangles[clockwise] = triangles[clockwise][:, [0, 2, 1]]
    doubled_area = doubled_area.abs()

    # Pixel columns whose centre j + 0.5 lies within [x_min, x_max]: j in [ceil(x_min - 0.5), floor(x_max - 0.5)].
    col_first = torch.ceil(triangles[..., 0].amin(1) - 0.5).clamp(min=0)
    col_last = torch.floor(triangles[..., 0].amax(1) - 0.5).clamp(max=width - 1)
    row_first = torch.ceil(triangles[..., 1].amin(1) - 0.5).clamp(min=0)
    row_last = torch.floor(triangles[..., 1].amax(1) - 0.5).clamp(max=height - 1)
    finite = torch.isfinite(triangles).flatten(1).all(1)
    # Degenerate triangles cover no pixel centre; dropping them also keeps the division below safe.
    drawable = finite & (doubled_area > 0) & (col_first <= col_last) & (row_first <= row_last)
    if not drawable.any():
        return face_index.view(height, width), depth.view(height, width)
    triangles, doubled_area, face_ids = triangles[drawable], doubled_area[drawable], face_ids[drawable]
    col_first, row_first = col_first[drawable].long(), row_first[drawable].long()
    box_width = col_last[drawable].long() - col_first + 1
    box_height = row_last[drawable].long() - row_first + 1

    # Edge k runs from corner k+1 to corner k+2, opposite corner k: its edge function at a
    # point is (doubled) the barycentric weight of corner k.
    start, end = triangles[:, [1, 2, 0], :2], triangles[:, [2, 0, 1], :2]
    edge_direction = end - start
    edge_owns_boundary = _is_top_left(edge_direction[..., 0], edge_direction[..., 1])

    # Chunks of faces with similar box sizes, so padding every box to the chunk's largest wastes little.
    box_side = torch.maximum(box_width, box_height)
    order = torch.argsort(box_side)
    sorted_sides = box_side[order].cpu().tolist()
    fragment_pixels, fragment_depths, fragment_faces = [], [], []
    first = 0
    while first < len(order):
        last = min(len(order), first + max(1, RASTER_CHUNK_ELEMENTS // sorted_sides[first] ** 2))
        while last - first > 1 and (last - first) * sorted_sides[last - 1] ** 2 > RASTER_CHUNK_ELEMENTS:
            last = first + max(1, RASTER_CHUNK_ELEMENTS // sorted_sides[last - 1] ** 2)
        chunk = order[first:last]
        first = last

        pad_height, pad_width = int(box_height[chunk].max()), int(box_width[chunk].max())
        rows = row_first[chunk, None, None] + torch.arange(pad_height, device=device)[None, :, None]  # (C, h, 1)
        cols = col_first[chunk, None, None] + torch.arange(pad_width, device=device)[None, None, :]  # (C, 1, w)
        in_box = ((rows - row_first[chunk, None, None]) < box_height[chunk, None, None]) & \
                 ((cols - col_first[chunk, None, None]) < box_width[chunk, None, None])
        centre_x = (cols + 0.5).to(torch.float64)[:, None]  # (C, 1, 1, w): the edge axis comes first
        centre_y = (rows + 0.5).to(torch.float64)[:, None]  # (C, 1, h, 1)
        chunk_start = start[chunk][..., None, None]  # (C, 3 edges, 2, 1, 1)
        chunk_direction = edge_direction[chunk][..., None, None]
        edge_values = chunk_direction[:, :, 0] * (centre_y - chunk_start[:, :, 1]) - \
            chunk_direction[:, :, 1] * (centre_x - chunk_start[:, :, 0])  # (C, 3, h, w)
        owns = edge_owns_boundary[chunk][..., None, None]
        inside = ((edge_values > 0) | ((edge_values == 0) & owns)).all(1) & in_box  # (C, h, w)

        hit_face, hit_row, hit_col = inside.nonzero(as_tuple=True)
        weights = edge_values[hit_face, :, hit_row, hit_col] / doubled_area[chunk][hit_face, None]  # (hits, 3)
        fragment_depths.append((weights * triangles[chunk][hit_face, :, 2]).sum(1))
        fragment_pixels.append(rows[hit_face, hit_row, 0] * width + cols[hit_face, 0, hit_col])
        fragment_faces.append(face_ids[chunk][hit_face])

    pixels, depths, faces_hit = torch.cat(fragment_pixels), torch.cat(fragment_depths), torch.cat(fragment_faces)
    depth.scatter_reduce_(0, pixels, depths, reduce="amin")
    nearest = depths == depth[pixels]
    first_listed = torch.full_like(face_index, torch.iinfo(torch.long).max)
    first_listed.scatter_reduce_(0, pixels[nearest], faces_hit[nearest], reduce="amin")
    covered = depth < float("inf")
    face_index[covered] = first_listed[covered]
    return face_index.view(height, width), depth.view(height, width)


def rasterize_labels(vertices_px: Tensor | Sequence[ArrayLike], faces: ArrayLike | Sequence[ArrayLike],
                     face_labels: ArrayLike | Sequence[ArrayLike], height: int, width: int) -> Tensor:
    """A label map ``(H, W)`` long of several meshes with occlusion between them.

    ``face_labels`` is ``(N, F)`` or a list of ``(F_i,)``: each mesh's per-face labels (for
    ACR: :func:`two_hand_face_labels`); pixels no face covers are 0, the background, so
    face labels should start at 1. Rasterisation rules are those of :func:`rasterize_faces`.
    """
    meshes = _mesh_list(vertices_px)
    face_count = sum(len(f) for f in _per_mesh(faces, len(meshes), "faces", shared_ndim=2))
    labels = torch.cat([torch.as_tensor(label).reshape(-1)
                        for label in _per_mesh(face_labels, len(meshes), "face_labels", shared_ndim=1)])
    if len(labels) != face_count:
        raise ValueError(f"face_labels: {len(labels)} labels for {face_count} faces")
    face_index, _ = rasterize_faces(meshes, faces, height, width)
    labels = labels.to(device=face_index.device, dtype=torch.long)
    label_map = torch.zeros_like(face_index)
    covered = face_index >= 0
    label_map[covered] = labels[face_index[covered]]
    return label_map


# ---------------------------------------------------------------------------------------------
# MANO part labels


def mano_part_labels(weights: ArrayLike, faces: ArrayLike) -> np.ndarray:
    """Each face's part, 1..J, from skinning weights ``(V, J)`` (MANO: ``(778, 16)``).

    A face belongs to the joint with the largest skinning weight summed over its three
    vertices (ties: the lower joint index). This is the MANO-skinning definition of a part
    (Romero, Tzionas, Black, "Embodied Hands", SIGGRAPH Asia 2017); ACR's released renderer
    took per-joint part labels from render_mano_ih (github.com/zc-alexfan/render_mano_ih),
    which may assign some faces on part boundaries differently.
    Returns ``(F,)`` int64.
    """
    weights = _numpy(weights).astype(np.float64)
    faces = _numpy(faces).astype(np.int64)
    if weights.ndim != 2 or faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"need weights (V, J) and faces (F, 3); got {weights.shape} and {faces.shape}")
    return weights[faces].sum(axis=1).argmax(axis=1) + 1


def two_hand_face_labels(right_labels: ArrayLike, left_labels: ArrayLike) -> np.ndarray:
    """Per-face labels of ACR's 33-class two-hand segmentation, ``(2, F)`` int64 in mesh order
    (right, left): right parts stay 1..16, left parts become 17..32; 0 is the background.
    Pass the result to :func:`rasterize_labels` with the meshes in the same order."""
    right, left = _numpy(right_labels).astype(np.int64), _numpy(left_labels).astype(np.int64)
    for name, labels in (("right_labels", right), ("left_labels", left)):
        if labels.size and (labels.min() < 1 or labels.max() > NUM_MANO_PARTS):
            raise ValueError(f"{name}: part labels must be 1..{NUM_MANO_PARTS}; got {labels.min()}..{labels.max()}")
    if right.shape != left.shape:
        raise ValueError(f"right and left labels differ in shape: {right.shape} vs {left.shape}")
    return np.stack([right, left + NUM_MANO_PARTS])


# ---------------------------------------------------------------------------------------------
# painter's algorithm


def _numpy(values: ArrayLike) -> np.ndarray:
    if isinstance(values, Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be H x W x 3 uint8; got {image.shape} {image.dtype}")


def draw_meshes(image: np.ndarray, meshes: Sequence[Mesh], alpha: float = 0.8, cull_back_faces: bool = False,
                ambient: float = 0.3) -> np.ndarray:
    """Shaded meshes over a copy of ``image`` (``H x W x 3`` uint8), without OpenGL.

    ``meshes``: ``(vertices_px (V, 3) with depth, faces (F, 3), rgb colour in 0..1)`` each, the
    colour one RGB or one per face ``(F, 3)``
    (see the module docstring for coordinates and the scale of depth). All triangles of all
    meshes are sorted by mean depth and painted far to near, so nearer triangles cover farther
    ones (the painter's algorithm: exact for non-intersecting triangles of similar size, like
    the faces of two hand meshes; use :func:`rasterize_faces` where per-pixel visibility
    matters). Flat Lambertian shading with the light at the camera: ``ambient + (1 - ambient)
    * |cos|`` of the face normal with the viewing axis, times the colour; both sides are lit
    alike. ``cull_back_faces`` drops faces turned away from the camera, assuming faces wind
    counter-clockwise seen from outside in a right-handed frame (MANO's): the pixel frame (x
    right, y down, z forward) is right-handed too, so a face turned to the camera looks
    counter-clockwise on screen and its normal has a negative z.
    The meshes are drawn opaque on one layer, then blended over the image with ``alpha``.
    Deterministic. Returns a new ``H x W x 3`` uint8 array.
    """
    _check_image(image)
    height, width = image.shape[:2]
    triangle_sets, colour_sets = [], []
    for vertices, faces, rgb in meshes:
        triangles = _numpy(vertices).astype(np.float64)[_numpy(faces).astype(np.int64)]
        triangle_sets.append(triangles)
        colour_sets.append(np.broadcast_to(np.asarray(rgb, dtype=np.float64), (len(triangles), 3)))
    if not triangle_sets or sum(len(t) for t in triangle_sets) == 0:
        return image.copy()
    triangles, colours = np.concatenate(triangle_sets), np.concatenate(colour_sets)

    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    toward_viewer = normals[:, 2]  # the z component is (doubled) the signed screen area, y down
    keep = np.isfinite(triangles).all(axis=(1, 2)) & (toward_viewer != 0)  # edge-on faces draw nothing
    if cull_back_faces:
        keep &= toward_viewer < 0  # the normal points to the camera, at smaller depth
    normal_length = np.linalg.norm(normals, axis=1)
    cos_to_camera = np.abs(toward_viewer) / np.maximum(normal_length, 1e-12)
    shaded = colours * (ambient + (1.0 - ambient) * cos_to_camera)[:, None]
    fills = np.clip(np.rint(shaded * 255.0), 0, 255).astype(np.uint8)

    triangles, fills = triangles[keep], fills[keep]
    far_first = np.argsort(-triangles[:, :, 2].mean(axis=1), kind="stable")  # stable: ties keep mesh order
    # PIL truncates corners to integers, i.e. to the pixel containing them in our convention
    # (centres at integer + 0.5), then fills inclusively: a drawn triangle may be up to a pixel
    # wider than its pixel-centre coverage (about half a pixel on each side, no net shift).
    corners = triangles[far_first, :, :2].reshape(len(far_first), 6).tolist()
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for polygon, fill in zip(corners, fills[far_first].tolist()):
        colour = (*fill, 255)
        draw.polygon(polygon, fill=colour, outline=colour)

    painted = np.asarray(layer, dtype=np.float32)
    coverage = painted[..., 3:] / 255.0 * alpha
    blended = image.astype(np.float32) * (1.0 - coverage) + painted[..., :3] * coverage
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def draw_skeleton(image: np.ndarray, joints_px: ArrayLike, colour: RGB = RIGHT_HAND_RGB, line_width: int = 2,
                  joint_radius: float = 3.0) -> np.ndarray:
    """The 21-joint hand skeleton (:data:`HAND_BONES`, FreiHAND order) over a copy of ``image``.

    ``joints_px``: ``(21, 2)`` (or ``(21, 3)``, depth ignored) pixel coordinates; joints that
    are not finite are skipped with their bones. ``colour``: RGB in 0..1.
    """
    _check_image(image)
    joints = _numpy(joints_px).astype(np.float64)
    if joints.ndim != 2 or joints.shape[0] != 21 or joints.shape[1] < 2:
        raise ValueError(f"joints_px must be (21, 2); got {joints.shape}")
    points = joints[:, :2]  # PIL truncates to integers: the pixel containing each point, as in our convention
    valid = np.isfinite(points).all(axis=1)
    fill = tuple(round(255 * min(max(c, 0.0), 1.0)) for c in colour)
    canvas = Image.fromarray(image.copy())
    draw = ImageDraw.Draw(canvas)
    for parent, child in HAND_BONES:
        if valid[parent] and valid[child]:
            draw.line([tuple(points[parent]), tuple(points[child])], fill=fill, width=line_width)
    for x, y in points[valid]:
        draw.ellipse([x - joint_radius, y - joint_radius, x + joint_radius, y + joint_radius], fill=fill)
    return np.asarray(canvas).copy()


def render_silhouette(height: int, width: int, meshes: Sequence[Mesh],
                      background: np.ndarray | RGB | None = None, cull_back_faces: bool = False) -> np.ndarray:
    """Opaque shaded meshes (:func:`draw_meshes`) on a background: ``H x W x 3`` uint8.

    ``background``: ``None`` (black), an RGB colour in 0..1, or an ``H x W x 3`` uint8 image
    (a texture for synthetic data). Deterministic: the same inputs give the same pixels.
    """
    if background is None:
        canvas = np.zeros((height, width, 3), dtype=np.uint8)
    elif isinstance(background, np.ndarray) and background.ndim == 3:
        if background.shape[:2] != (height, width):
            raise ValueError(f"background is {background.shape[:2]}, not {(height, width)}")
        canvas = background
    else:
        rgb = np.clip(np.rint(np.asarray(background, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
        canvas = np.broadcast_to(rgb, (height, width, 3)).copy()
    return draw_meshes(canvas, meshes, alpha=1.0, cull_back_faces=cull_back_faces)
