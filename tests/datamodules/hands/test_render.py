"""Hand rendering: z-buffer label maps, MANO part labels and the headless painter."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from polyvision.datamodules.hands import render
from polyvision.datamodules.hands.render import (
    HAND_BONES,
    LEFT_HAND_RGB,
    RIGHT_HAND_RGB,
    draw_meshes,
    draw_skeleton,
    mano_part_labels,
    rasterize_faces,
    rasterize_labels,
    render_silhouette,
    two_hand_face_labels,
)

ONE_FACE = torch.tensor([[0, 1, 2]])


def triangle(corners, depth=0.0) -> torch.Tensor:
    """A (3, 3) vertex tensor: pixel x, y of each corner and a constant depth."""
    corners = torch.tensor(corners, dtype=torch.float64)
    return torch.cat([corners, torch.full((3, 1), float(depth), dtype=torch.float64)], dim=1)


def coverage(corners, height=64, width=64) -> torch.Tensor:
    face_index, _ = rasterize_faces([triangle(corners)], ONE_FACE, height, width)
    return face_index >= 0


# ----------------------------------------------------------------------------- rasteriser


def test_right_triangle_covers_the_pixel_centres_inside_it():
    # Legs of 40 px from (2, 2): centres (2 + k + 0.5, 2 + l + 0.5) are inside for k + l <= 38
    # (780 of them); those with k + l == 39 lie on the hypotenuse, a bottom-right edge that the
    # top-left rule leaves to a neighbour.
    covered = coverage([[2, 2], [42, 2], [2, 42]])
    assert int(covered.sum()) == 39 * 40 // 2
    rows, cols = torch.nonzero(covered, as_tuple=True)
    assert int(rows.min()) == 2 and int(cols.min()) == 2 and int((rows + cols).max()) == 4 + 38


@pytest.mark.parametrize("winding", [[0, 1, 2], [0, 2, 1]])
def test_coverage_of_a_general_triangle_matches_its_area(winding):
    corners = np.array([[5.3, 7.1], [58.2, 20.4], [17.9, 61.6]])[winding]
    covered = coverage(corners.tolist())
    area = 0.5 * abs(np.cross(corners[1] - corners[0], corners[2] - corners[0]))
    perimeter = sum(np.linalg.norm(corners[i] - corners[i - 1]) for i in range(3))
    assert abs(int(covered.sum()) - area) < perimeter / 2  # only boundary pixels may differ
    # and exactly the centres strictly inside (none lies on an edge here), whatever the winding
    y, x = np.mgrid[0:64, 0:64] + 0.5
    a, b, c = corners
    sides = [np.sign((q[0] - p[0]) * (y - p[1]) - (q[1] - p[1]) * (x - p[0])) for p, q in ((a, b), (b, c), (c, a))]
    inside = (sides[0] == sides[1]) & (sides[1] == sides[2])
    np.testing.assert_array_equal(covered.numpy(), inside)


def test_triangles_sharing_an_edge_cover_each_pixel_once():
    # The diagonal passes through 16 pixel centres: each goes to exactly one of the two halves.
    lower, upper = coverage([[0, 0], [16, 16], [0, 16]]), coverage([[0, 0], [16, 0], [16, 16]])
    assert not (lower & upper).any()
    assert int((lower | upper).sum()) == 16 * 16 and bool((lower | upper)[:16, :16].all())


def test_depth_is_interpolated_across_the_face():
    vertices = torch.tensor([[0.0, 0.0, 0.0], [32.0, 0.0, 32.0], [0.0, 32.0, 0.0]])  # depth = x
    face_index, depth = rasterize_faces([vertices], ONE_FACE, 32, 32)
    assert int(face_index[3, 10]) == 0 and float(depth[3, 10]) == pytest.approx(10.5)
    assert int(face_index[31, 31]) == -1 and depth[31, 31] == float("inf")


@pytest.mark.parametrize("near_first", [True, False])
def test_the_nearer_of_two_overlapping_meshes_wins(near_first):
    near = triangle([[4, 4], [28, 4], [4, 28]], depth=1.0)
    far = triangle([[8, 8], [30, 8], [8, 30]], depth=5.0)
    meshes, labels = ([near, far], [[1], [2]]) if near_first else ([far, near], [[2], [1]])
    label_map = rasterize_labels(meshes, ONE_FACE, torch.tensor(labels), 32, 32)
    assert int(label_map[10, 10]) == 1  # inside both: the near one
    assert int(label_map[17, 17]) == 2  # only the far one reaches here
    assert int(label_map[1, 1]) == 0


def test_occlusion_between_faces_of_one_mesh_ignores_face_order():
    vertices = torch.cat([triangle([[4, 4], [28, 4], [4, 28]], depth=3.0),
                          triangle([[2, 2], [30, 2], [2, 30]], depth=2.0)])
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    for order in ([0, 1], [1, 0]):
        face_index, _ = rasterize_faces([vertices], faces[order], 32, 32)
        assert int(faces[order][face_index[10, 10]][0]) == 3  # the nearer face


def test_label_map_of_two_hands_offsets_the_left_parts():
    right = triangle([[2, 2], [14, 2], [2, 14]])
    left = triangle([[18, 18], [30, 18], [18, 30]])
    labels = two_hand_face_labels(np.array([5]), np.array([5]))
    label_map = rasterize_labels(torch.stack([right, left]), ONE_FACE, torch.from_numpy(labels), 32, 32)
    assert label_map.dtype == torch.long and label_map.shape == (32, 32)
    assert int(label_map[4, 4]) == 5 and int(label_map[20, 20]) == 5 + 16 and int(label_map[16, 4]) == 0
    assert set(label_map.unique().tolist()) == {0, 5, 21}


def test_chunked_rasterisation_matches_face_by_face_rendering(monkeypatch):
    monkeypatch.setattr(render, "RASTER_CHUNK_ELEMENTS", 400)  # many chunks of a few faces
    generator = torch.Generator().manual_seed(0)
    centres = torch.rand(100, 1, 2, generator=generator) * 40
    corners = centres + torch.randn(100, 3, 2, generator=generator) * 5
    vertices = torch.cat([corners, torch.rand(100, 3, 1, generator=generator)], dim=2).reshape(-1, 3)
    faces = torch.arange(len(vertices)).reshape(-1, 3)
    face_index, depth = rasterize_faces([vertices], faces, 40, 40)
    single_depths = torch.stack([rasterize_faces([vertices[face]], ONE_FACE, 40, 40)[1] for face in faces])
    expected_depth, expected_face = single_depths.min(dim=0)
    torch.testing.assert_close(depth, expected_depth)
    covered = torch.isfinite(expected_depth)
    assert bool((face_index[covered] == expected_face[covered]).all()) and bool((face_index[~covered] == -1).all())
    assert 0.2 < covered.float().mean() < 1.0  # a meaningful mix of covered and empty pixels


def test_labels_must_match_the_faces():
    with pytest.raises(ValueError, match="labels"):
        rasterize_labels([triangle([[0, 0], [4, 0], [0, 4]])], ONE_FACE, [torch.tensor([1, 2])], 8, 8)


# ----------------------------------------------------------------------------- part labels


def test_a_face_belongs_to_the_joint_with_most_skinning_weight():
    joint_of_vertex = [3, 3, 7, 0, 5, 9]
    weights = np.eye(16)[joint_of_vertex]  # one-hot skinning
    faces = np.array([[0, 1, 2], [2, 3, 2], [3, 4, 5]])
    # two votes for joint 3; two for joint 7; a three-way tie goes to the lowest joint, 0
    np.testing.assert_array_equal(mano_part_labels(weights, faces), [4, 8, 1])


def test_two_hand_labels_reject_parts_outside_1_to_16():
    np.testing.assert_array_equal(two_hand_face_labels(np.array([1, 16]), np.array([1, 16])), [[1, 16], [17, 32]])
    with pytest.raises(ValueError, match="1..16"):
        two_hand_face_labels(np.array([0]), np.array([1]))


# ----------------------------------------------------------------------------- painter


def flat_mesh(corners, depth, colour):
    """One triangle parallel to the image plane (fully lit, so drawn in exactly ``colour``)."""
    return triangle(corners, depth).numpy(), np.array([[0, 1, 2]]), colour


def test_drawing_changes_covered_pixels_only():
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    original = image.copy()
    drawn = draw_meshes(image, [flat_mesh([[4, 4], [40, 4], [4, 40]], 1.0, RIGHT_HAND_RGB)])
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    np.testing.assert_array_equal(image, original)  # the input is left alone
    assert (drawn[10, 10] != original[10, 10]).any()
    np.testing.assert_array_equal(drawn[45:, 45:], original[45:, 45:])


def test_painted_triangles_sit_where_the_rasteriser_puts_them():
    # Same coordinate convention: PIL paints a little more or less along edges, but with no
    # shift: on average over triangles the painted and rasterised regions share their centre.
    rows, cols = np.mgrid[0:64, 0:64]
    offsets, mismatch = [], []
    for corners in np.random.default_rng(0).uniform(2, 62, size=(100, 3, 2)):
        rasterised = coverage(corners.tolist()).numpy()
        painted = draw_meshes(np.zeros((64, 64, 3), np.uint8), [flat_mesh(corners.tolist(), 1.0, (1.0, 1.0, 1.0))],
                              alpha=1.0)[..., 0] > 0
        if rasterised.sum() >= 50:
            offsets.append([axis[painted].mean() - axis[rasterised].mean() for axis in (rows, cols)])
            mismatch.append((painted ^ rasterised).sum() / rasterised.sum())
    assert len(offsets) >= 60
    assert np.abs(np.mean(offsets, axis=0)).max() < 0.2  # a half-pixel shift would show as 0.5
    assert np.mean(mismatch) < 0.3


def test_alpha_blends_the_shaded_colour_over_the_image():
    image = np.full((32, 32, 3), 100, dtype=np.uint8)
    drawn = draw_meshes(image, [flat_mesh([[2, 2], [30, 2], [2, 30]], 1.0, (1.0, 0.0, 0.5))], alpha=0.5)
    np.testing.assert_array_equal(drawn[8, 8], [178, 50, 114])  # 0.5 * (255, 0, 128) + 0.5 * 100


@pytest.mark.parametrize("near_first", [True, False])
def test_the_near_triangle_hides_the_far_one(near_first):
    near = flat_mesh([[4, 4], [28, 4], [4, 28]], 1.0, (1.0, 0.0, 0.0))
    far = flat_mesh([[8, 8], [31, 8], [8, 31]], 9.0, (0.0, 0.0, 1.0))
    drawn = draw_meshes(np.zeros((32, 32, 3), np.uint8), [near, far] if near_first else [far, near], alpha=1.0)
    np.testing.assert_array_equal(drawn[10, 10], [255, 0, 0])
    np.testing.assert_array_equal(drawn[17, 17], [0, 0, 255])


def test_shading_darkens_tilted_faces_and_culling_drops_back_faces():
    facing = np.array([[4.0, 4.0, 0.0], [4.0, 28.0, 0.0], [28.0, 4.0, 0.0]])  # counter-clockwise as seen: faces the camera
    tilted = facing.copy()
    tilted[:, 2] = tilted[:, 0]  # leans away by 45 degrees
    faces, black = np.array([[0, 1, 2]]), np.zeros((32, 32, 3), np.uint8)
    lit = draw_meshes(black, [(facing, faces, (1.0, 1.0, 1.0))], alpha=1.0)[8, 8]
    dimmer = draw_meshes(black, [(tilted, faces, (1.0, 1.0, 1.0))], alpha=1.0)[8, 8]
    assert lit[0] == 255 and dimmer[0] == round(255 * (0.3 + 0.7 * np.sqrt(0.5)))
    away = faces[:, ::-1]
    assert draw_meshes(black, [(facing, away, (1.0, 1.0, 1.0))], alpha=1.0)[8, 8][0] == 255  # both sides by default
    assert draw_meshes(black, [(facing, away, (1.0, 1.0, 1.0))], alpha=1.0, cull_back_faces=True)[8, 8][0] == 0
    assert draw_meshes(black, [(facing, faces, (1.0, 1.0, 1.0))], alpha=1.0, cull_back_faces=True)[8, 8][0] == 255


def test_silhouette_renders_are_deterministic_on_any_background():
    meshes = [flat_mesh([[4, 4], [28, 4], [4, 28]], 1.0, LEFT_HAND_RGB),
              flat_mesh([[10, 10], [30, 12], [12, 30]], 2.0, RIGHT_HAND_RGB)]
    texture = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    plain = render_silhouette(32, 32, meshes)
    assert plain.shape == (32, 32, 3) and plain.dtype == np.uint8
    np.testing.assert_array_equal(plain, render_silhouette(32, 32, meshes))
    np.testing.assert_array_equal(plain[31, 31], [0, 0, 0])
    np.testing.assert_array_equal(render_silhouette(32, 32, meshes, (0.0, 1.0, 0.0))[31, 31], [0, 255, 0])
    textured = render_silhouette(32, 32, meshes, texture)
    np.testing.assert_array_equal(textured[31, 31], texture[31, 31])
    np.testing.assert_array_equal(textured[6, 6], plain[6, 6])


def test_skeleton_bones_form_the_21_joint_hand_tree():
    children = [child for _, child in HAND_BONES]
    assert len(HAND_BONES) == 20 and sorted(children) == list(range(1, 21))
    assert all(parent < child for parent, child in HAND_BONES)
    assert {parent for parent, child in HAND_BONES if child in (1, 5, 9, 13, 17)} == {0}


def test_skeleton_is_drawn_along_the_bones():
    joints = np.full((21, 2), np.nan)
    joints[0], joints[1] = (8.5, 32.5), (56.5, 32.5)  # only the wrist -> thumb bone is drawable
    image = np.zeros((64, 64, 3), np.uint8)
    drawn = draw_skeleton(image, joints, colour=(0.0, 1.0, 0.0))
    np.testing.assert_array_equal(drawn[32, 30], [0, 255, 0])
    np.testing.assert_array_equal(drawn[10:20], image[10:20])
    assert not image.any()
