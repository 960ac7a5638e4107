"""ACR (models/acr.py, heads/hands.py): paper-size parameter counts, the pieces of the head
checked by hand, the MANO files kept out of checkpoints, and one-line errors."""
from __future__ import annotations

import math

import pytest
import torch

import polyvision
from polyvision.errors import ConfigError
from polyvision.heads.hands import (
    NUM_HAND_PARAMETERS,
    NUM_MANO_PARAMETERS,
    TwoHandHead,
    centre_cells,
    focal_loss,
    solve_translation,
)
from polyvision.models.acr import ACR

from helpers import hand_batch


def parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def head_breakdown(head: TwoHandHead) -> dict[str, int]:
    return {name: parameters(child) for name, child in head.named_children() if name != "mano"}


@pytest.mark.parametrize("name, total, backbone", [
    ("acr_hrnet_w32", 30_930_943, 29_305_536),  # timm hrnet_w32 up to stage 4 (ACR's trunk) + ACR's head
    ("acr_swin_t", 29_461_433, 27_517_818),
])
def test_paper_configs_build_at_full_size(name, total, backbone):
    model = polyvision.create_model(name, mano_dir="generated")
    head = model.heads["hands"]
    print(name, f"{parameters(model):,}", {"backbone": parameters(model.backbone), **head_breakdown(head)})
    assert parameters(model.backbone) == backbone
    assert parameters(model) == total
    if name == "acr_hrnet_w32":
        assert model.backbone.out_channels == [32] and model.backbone.strides == [4]
        # ACR's head on a 32-channel map (acr/model.py): SegmNet, 8 map heads, part attention.
        # ACR's head on a 32-channel map (acr/model.py), counted by hand: SegmNet 4,624 + 32 +
        # 9,280 + 128 + 19,041 + 66 + 9,834; a map head 34·64·9 + 128 + 2·(2·64·64·9 + 256) +
        # 65·out; part regressors 16·(256·6 + 6); shape 1,024·10 + 10; fusion 218·109 + 109.
        map_head = 34 * 64 * 9 + 128 + 2 * (2 * 64 * 64 * 9 + 256)
        assert head_breakdown(head) == {
            "segmentation": 4_624 + 32 + 9_280 + 128 + 19_041 + 66 + 9_834, "parameter_maps": 2 * (map_head + 65 * 106), "center_maps": 2 * (map_head + 65),
            "camera_maps": 2 * (map_head + 65 * 3), "prior_maps": 2 * (map_head + 65 * 106),
            "pose_features": 34 * 256 * 9 + 512, "shape_features": 256 * 64 + 64,
            "pose_regressors": 2 * 16 * (256 * 6 + 6), "shape_regressors": 2 * (1024 * 10 + 10),
            "fusion": 2 * (218 * 109 + 109)}


def test_without_mano_files_the_error_says_where_to_put_them(tmp_path):
    with pytest.raises(ConfigError, match="MANO_RIGHT.pkl and MANO_LEFT.pkl.*--model.init_args.mano_dir"):
        ACR()
    with pytest.raises(Exception, match="MANO_RIGHT"):
        ACR(mano_dir=str(tmp_path))


def test_checkpoints_hold_no_mano_arrays():
    model = ACR(mano_dir="generated", backbone="resnet10t", backbone_kwargs={"out_indices": [1, 2, 3]})
    assert not [key for key in model.state_dict() if ".mano." in key]
    assert model.hparams["heads"]["hands"]["init_args"]["mano_dir"] == "generated"


def test_translation_is_recovered_from_an_exact_projection():
    generator = torch.Generator().manual_seed(0)
    joints = 0.05 * torch.randn(3, 21, 3, generator=generator)
    translation = torch.tensor([[0.1, -0.05, 0.6], [0.0, 0.0, 0.4], [-0.2, 0.1, 1.0]])
    camera = torch.tensor([[500.0, 0, 128], [0, 480.0, 120], [0, 0, 1]]).expand(3, 3, 3)
    points = joints + translation[:, None]
    pixels = torch.stack([points[..., 0] / points[..., 2] * 500 + 128, points[..., 1] / points[..., 2] * 480 + 120], -1)
    torch.testing.assert_close(solve_translation(joints, pixels, camera), translation, atol=1e-5, rtol=0)


def test_focal_loss_matches_a_hand_computed_case():
    # One peak with logit 0 (p = 1/2): -log(1/2)·(1/2)² = 0.17329; a background cell with
    # target 0 and logit 0: -log(1/2)·(1/2)²·1 = 0.17329; normalised by the one peak.
    logits = torch.zeros(1, 1, 1, 2)
    target = torch.tensor([[[[1.0, 0.0]]]])
    assert math.isclose(float(focal_loss(logits, target)), 2 * math.log(2) / 4, rel_tol=1e-4)


def test_centres_map_to_their_grid_cells():
    centres = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0], [-0.9, 0.1]])
    assert centre_cells(centres, 8).tolist() == [0, 63, 4 * 8 + 4, 4 * 8 + 0]


def small_head() -> ACR:
    return ACR(heads={"hands": TwoHandHead("generated", head_width=16, part_feature_channels=32)},
               backbone="resnet10t", backbone_kwargs={"out_indices": [1, 2, 3]})


def test_each_hand_adds_the_prior_read_at_the_other_hands_centre():
    head = small_head().heads["hands"]
    size = 4
    parameters = torch.zeros(1, 2, NUM_HAND_PARAMETERS, size, size)
    priors = torch.zeros(1, 2, NUM_MANO_PARAMETERS, size, size)
    right_cell, left_cell = 5, 10
    priors[0, 0, -10:].view(10, -1)[:, left_cell] = 0.3  # the right hand's shape prior, at the left centre
    priors[0, 1, -10:].view(10, -1)[:, right_cell] = -0.2
    priors[0, 0, -10:].view(10, -1)[:, right_cell] = 9.0  # at its own centre: never read
    outputs = {"parameters": parameters, "priors": priors}
    cells = torch.tensor([[right_cell, left_cell]])
    both = head.sample_hands(outputs, cells, torch.tensor([[True, True]]), torch.tensor([True]))
    assert torch.allclose(both["betas"][0, 0], torch.full((10,), 0.3))
    assert torch.allclose(both["betas"][0, 1], torch.full((10,), -0.2))
    one = head.sample_hands(outputs, cells, torch.tensor([[True, False]]), torch.tensor([True]))
    assert torch.count_nonzero(one["betas"]) == 0  # a lone hand gets no prior
    far = head.sample_hands(outputs, cells, torch.tensor([[True, True]]), torch.tensor([False]))
    assert torch.count_nonzero(far["betas"]) == 0  # nor do hands too far apart at test time


def test_detection_keeps_each_sides_best_peak_above_the_threshold():
    head = small_head().heads["hands"]
    centers = torch.full((1, 2, 8, 8), -10.0)
    centers[0, 0, 2, 3] = 2.0  # right: p = 0.88
    centers[0, 0, 2, 4] = 1.0  # its neighbour, suppressed
    centers[0, 1, 6, 6] = -1.0  # left: p = 0.27 < 0.35
    cells, scores, detected = head.detect({"centers": centers})
    assert cells.tolist() == [[2 * 8 + 3, 6 * 8 + 6]]
    assert detected.tolist() == [[True, False]]
    assert math.isclose(float(scores[0, 0]), 1 / (1 + math.exp(-2.0)), rel_tol=1e-6)


def test_losses_are_finite_and_vanish_without_hands():
    model = small_head()
    batch = hand_batch()
    losses = model.training_losses(batch)
    assert {"hands/center", "hands/pose", "hands/shape", "hands/joints_3d", "hands/joints_2d"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    batch["hand_valid"][:] = False
    batch["mano_valid"][:] = False
    empty = model.training_losses(batch)
    assert all(float(v) == 0 or key == "hands/center" for key, v in empty.items())
