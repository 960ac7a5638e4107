"""``polyvision export``: every system's small model to ONNX and TorchScript, each file run
against eager PyTorch (batch 2 through a graph exported at batch 3), its metadata, the refusals
(an existing OUT, a file that is no checkpoint, a file that differs from PyTorch), and
``polyvision infer`` from an exported OmniFD image model against the eager path.

ONNX tests skip without onnx/onnxruntime (``pip install 'polyvision[export]'``; the test extras
install them, so ``make test`` runs them).
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from polyvision.cli import main as cli_main
from polyvision.datamodules.geometry import clip_geometry, image_geometry

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HAS_ONNX = importlib.util.find_spec("onnx") is not None and importlib.util.find_spec("onnxruntime") is not None
needs_onnx = pytest.mark.skipif(not HAS_ONNX, reason="onnx and onnxruntime are not installed (pip install 'polyvision[export]')")
WORDS = [f"w{i}" for i in range(1, 60)]


def geometry_of(name: str) -> dict:
    from polyvision.datamodules.anomaly.pipeline import PipelineSettings

    return {
        "omnifd_synthetic": {"image": image_geometry(64), "video": clip_geometry(16, 2, 64)},
        "omnifd_synthetic_ffpp": {"image": image_geometry(64)},
        "state_synthetic": {"video": {"input": "video", "object_pipeline": PipelineSettings().to_dict()}},
        "acr_synthetic": {"image": {"input": "image", "size": [128, 128], "pad": "white", "normalize": "minus_one_to_one"}},
        "cvlnm_synthetic": {"captions": {"input": "regions", "feature_dim": 2048, "max_length": 16, "vocabulary": WORDS}},
        # HybridNet's vocabularies come from the data: pass them, as tests/models/test_model_contract.py does.
        "hybridnet_synthetic": {"v2c": {"input": "features", "vocabulary": WORDS[:28], "cms_vocabulary": WORDS[:38],
                                        "feature_dims": {"appearance": 2048, "motion": 1024, "audio": 1024},
                                        "rows": {"appearance": 20, "motion": 10, "audio": 10}}},
    }[name]


def save_checkpoint(name: str, path: Path) -> Path:
    from polyvision.models.factory import create_model

    torch.manual_seed(0)
    model = create_model(name, input_geometry=geometry_of(name))
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("checkpoints")
    return {name: save_checkpoint(name, folder / f"{name}.ckpt")
            for name in ("omnifd_synthetic", "omnifd_synthetic_ffpp", "state_synthetic", "acr_synthetic",
                         "cvlnm_synthetic", "hybridnet_synthetic")}


# system -> (part, outputs): what each export holds.
EXPECTED = {
    "omnifd_synthetic": ("heads", ["image/logits", "spatial/mask_logits", "video/logits", "temporal/cls_logits",
                                   "temporal/offsets", "temporal/point_mask"]),
    "state_synthetic": ("heads", ["raw/prediction", "flow/prediction"]),
    "acr_synthetic": ("heads", ["hands/segmentation", "hands/centers", "hands/parameters", "hands/priors"]),
    "cvlnm_synthetic": ("encoder", ["memory", "memory_mask"]),
    "hybridnet_synthetic": ("encoder", ["latents"]),
}
FORMATS = [pytest.param("onnx", marks=needs_onnx), "torchscript"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", list(EXPECTED))
def test_export_matches_eager(name, fmt, checkpoints, tmp_path, capsys):
    from polyvision.scripts.export import TOLERANCE, read_metadata

    out = tmp_path / f"{name}.{fmt}"
    assert cli_main(["export", "--checkpoint", str(checkpoints[name]), "--format", fmt, str(out)]) == 0
    printed = capsys.readouterr().out
    part, outputs = EXPECTED[name]
    for output in outputs:
        line = next(line for line in printed.splitlines() if line.strip().startswith(output + " "))
        assert line.rstrip().endswith("ok"), line
        assert float(line.split("max abs diff ")[1].split()[0]) <= TOLERANCE * 10, line
    assert "batch 2 (exported at batch 3)" in printed
    if part == "encoder":
        assert "autoregressive beam search with data-dependent lengths is not expressible in a static ONNX graph" in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary file left

    meta = read_metadata(out)
    assert meta["polyvision.part"] == part
    assert [o["name"] for o in meta["polyvision.outputs"]] == outputs
    assert all(o["shape"][0] == "batch" for o in meta["polyvision.outputs"])
    assert all(i["shape"][0] == "batch" for i in meta["polyvision.inputs"])
    assert meta["polyvision.input_geometry"] == json.loads(json.dumps(geometry_of(name)))
    preprocessing = meta["polyvision.preprocessing"]
    pixels = name not in ("cvlnm_synthetic", "hybridnet_synthetic")
    assert preprocessing["normalized_in_graph"] is pixels
    assert {i["dtype"] for i in meta["polyvision.inputs"]} <= ({"uint8"} if pixels else {"float32", "bool"})
    if name == "omnifd_synthetic":
        assert [i["name"] for i in meta["polyvision.inputs"]] == ["image", "video"]
        assert meta["polyvision.inputs"][1]["shape"] == ["batch", 3, 16, 64, 64]
        assert "soft-NMS" in meta["polyvision.left_in_python"]
        assert len(meta["polyvision.constants"]["temporal/points"]) == 63  # the fixed points, for decoding
    if fmt == "onnx":
        import onnx

        graph = onnx.load(str(out)).graph
        assert all(graph_input.type.tensor_type.shape.dim[0].dim_param for graph_input in graph.input)  # dynamic batch


@needs_onnx
def test_existing_out_is_never_replaced(checkpoints, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"keep me")
    assert cli_main(["export", "--checkpoint", str(checkpoints["state_synthetic"]), "--format", "onnx", str(out)]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "exists" in error and "never overwrites" in error
    assert out.read_bytes() == b"keep me"


@pytest.mark.parametrize("content", [b"not a checkpoint at all", b""])
def test_a_file_that_is_no_checkpoint_is_refused(content, tmp_path, capsys):
    source = tmp_path / "notes.ckpt"
    source.write_bytes(content)
    out = tmp_path / "model.pt"
    assert cli_main(["export", "--checkpoint", str(source), "--format", "torchscript", str(out)]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "not a readable checkpoint" in error
    assert not out.exists()


def test_a_state_dict_alone_is_refused(tmp_path, capsys):
    source = tmp_path / "weights.pth"
    torch.save({"layer.weight": torch.zeros(2)}, source)
    assert cli_main(["export", "--checkpoint", str(source), "--format", "torchscript", str(tmp_path / "m.pt")]) == 1
    assert "not a polyvision checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_export_that_differs_from_pytorch_fails_and_leaves_no_file(fmt, checkpoints, tmp_path, capsys, monkeypatch):
    from polyvision.scripts import export

    original = export.run_exported

    def perturbed(*args, **kwargs):
        return [value + 1e-2 for value in original(*args, **kwargs)]

    monkeypatch.setattr(export, "run_exported", perturbed)
    out = tmp_path / f"state.{fmt}"
    assert cli_main(["export", "--checkpoint", str(checkpoints["state_synthetic"]), "--format", fmt, str(out)]) == 1
    captured = capsys.readouterr()
    assert "FAIL" in captured.out and "differs from eager PyTorch above the tolerance" in captured.err
    assert list(tmp_path.iterdir()) == []


@needs_onnx
def test_infer_from_onnx_gives_the_eager_outputs(checkpoints, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "ffpp.onnx"
    assert cli_main(["export", "--checkpoint", str(checkpoints["omnifd_synthetic_ffpp"]), "--format", "onnx", str(out)]) == 0
    rng = np.random.default_rng(0)
    images = []
    for index, (height, width) in enumerate([(64, 64), (90, 120), (50, 40)]):
        path = tmp_path / f"face{index}.png"
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
        images.append(str(path))
    capsys.readouterr()
    records = {}
    for kind, checkpoint in (("eager", checkpoints["omnifd_synthetic_ffpp"]), ("onnx", out)):
        assert cli_main(["infer", "--checkpoint", str(checkpoint), "--device", "cpu", "--batch-size", "2",
                         "--output-dir", str(tmp_path / kind), *images]) == 0
        lines = [json.loads(line) for line in (tmp_path / kind / "predictions.jsonl").read_text().splitlines()]
        records[kind] = {Path(r["path"]).name: r for r in lines}
        assert len(lines) == 3
    for name, eager in records["eager"].items():
        exported = records["onnx"][name]
        assert exported["image"]["label"] == eager["image"]["label"]
        assert exported["image"]["score"] == pytest.approx(eager["image"]["score"], abs=2e-6)
        for cls, p in eager["image"]["probabilities"].items():
            assert exported["image"]["probabilities"][cls] == pytest.approx(p, abs=2e-6)
        assert exported["spatial"]["max_probability"] == pytest.approx(eager["spatial"]["max_probability"], abs=2e-6)
        assert exported["spatial"]["forged_fraction"] == pytest.approx(eager["spatial"]["forged_fraction"], abs=0.02)
        assert Path(exported["spatial"]["overlay_png"]).is_file()
        mask_e = np.asarray(Image.open(eager["spatial"]["mask_png"]), dtype=int)
        mask_o = np.asarray(Image.open(exported["spatial"]["mask_png"]), dtype=int)
        assert np.abs(mask_e - mask_o).max() <= 1


@needs_onnx
def test_infer_refuses_an_onnx_file_that_also_reads_clips(checkpoints, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "unified.onnx"
    assert cli_main(["export", "--checkpoint", str(checkpoints["omnifd_synthetic"]), "--format", "onnx",
                     "--input", "image", str(out)]) == 0
    image = tmp_path / "face.png"
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(image)
    # --input image: the image heads alone, which infer runs.
    assert cli_main(["infer", "--checkpoint", str(out), "--output-dir", str(tmp_path / "a"), str(image)]) == 0
    both = tmp_path / "both.onnx"
    assert cli_main(["export", "--checkpoint", str(checkpoints["omnifd_synthetic"]), "--format", "onnx", str(both)]) == 0
    capsys.readouterr()
    assert cli_main(["infer", "--checkpoint", str(both), "--output-dir", str(tmp_path / "b"), str(image)]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "export with --input image" in error[0]
