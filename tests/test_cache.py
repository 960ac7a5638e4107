"""The cache location: $POLYVISION_CACHE, else $XDG_CACHE_HOME/polyvision, else ~/.cache/polyvision;
datamodule defaults and the synthetic configs follow it."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from polyvision.datamodules.cache import cache_dir

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    monkeypatch.delenv("POLYVISION_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


def test_default_is_home_cache(clean_env, tmp_path):
    assert cache_dir() == tmp_path / "home" / ".cache" / "polyvision"
    assert cache_dir("synthetic", "ped2") == tmp_path / "home" / ".cache" / "polyvision" / "synthetic" / "ped2"


def test_xdg_cache_home(clean_env, tmp_path):
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("state") == tmp_path / "xdg" / "polyvision" / "state"
    clean_env.setenv("XDG_CACHE_HOME", "relative/dir")  # the XDG spec says: ignore relative paths
    assert cache_dir() == tmp_path / "home" / ".cache" / "polyvision"


def test_polyvision_cache_wins(clean_env, tmp_path):
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    clean_env.setenv("POLYVISION_CACHE", str(tmp_path / "mine"))
    assert cache_dir("synthetic", "ffpp") == tmp_path / "mine" / "synthetic" / "ffpp"


def test_datamodule_defaults_follow_the_environment(clean_env, tmp_path):
    from polyvision.datamodules.anomaly.datamodule import STATEDataModule
    from polyvision.datamodules.forgery.ffpp import FaceForensicsDataModule, FaceForensicsVideoDataModule
    from polyvision.datamodules.forgery.forgerynet import ForgeryNetImageDataModule, ForgeryNetVideoDataModule
    from polyvision.datamodules.forgery.lavdf import LAVDFDataModule
    from polyvision.datamodules.forgery.wilddeepfake import WildDeepfakeDataModule

    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    base = tmp_path / "xdg" / "polyvision"
    state = STATEDataModule(dataset="ped2", synthetic=True, num_workers=0)
    assert state.root == base / "synthetic" / "ped2"
    assert state.cache_root == base / "state"  # cache_directory(split) is cache_root / <dataset-split-key>
    explicit = STATEDataModule(dataset="ped2", synthetic=True, root=None, cache_dir=None, num_workers=0)
    assert explicit.root == state.root and explicit.cache_root == state.cache_root
    expected = {FaceForensicsDataModule: "ffpp", FaceForensicsVideoDataModule: "ffpp_video",
                ForgeryNetImageDataModule: "forgerynet", ForgeryNetVideoDataModule: "forgerynet",
                LAVDFDataModule: "lavdf", WildDeepfakeDataModule: "wilddeepfake"}
    for cls, name in expected.items():
        for kwargs in ({}, {"cache_dir": None}):
            assert Path(cls(synthetic=True, num_workers=0, **kwargs).root) == base / "synthetic" / name, cls
    given = ForgeryNetVideoDataModule(synthetic=True, cache_dir=str(tmp_path / "given"), num_workers=0)
    assert Path(given.root) == tmp_path / "given"


def test_configs_leave_the_location_to_the_default():
    for path in sorted(CONFIGS.rglob("*.yaml")):
        assert ".cache/polyvision" not in yaml.safe_dump(yaml.safe_load(path.read_text())), path


def test_synthetic_config_resolves_in_a_fresh_process(tmp_path):
    """The STATE synthetic config through the CLI's parser, with only the environment set."""
    code = (
        "import yaml\n"
        "from polyvision.datamodules.anomaly.datamodule import STATEDataModule\n"
        f"cfg = yaml.safe_load(open({str(CONFIGS / 'state' / 'synthetic.yaml')!r}))['data']['init_args']\n"
        "dm = STATEDataModule(**{**cfg, 'num_workers': 0})\n"
        "print(dm.root); print(dm.cache_root)\n")
    env = {**os.environ, "POLYVISION_CACHE": str(tmp_path / "pc"), "NO_ALBUMENTATIONS_UPDATE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(tmp_path / "pc" / "synthetic" / "ped2"), str(tmp_path / "pc" / "state")]
