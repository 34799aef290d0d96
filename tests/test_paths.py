"""The data root: ``KDIQA_DATA``, ``kdiqa --data-root``, ``data:`` paths and the error when it is unset."""

from __future__ import annotations

import json

import pytest
from conftest import synthetic_photo

from kdiqa import paths
from kdiqa.data.pools import PoolConfig, PoolSource, build_items, source_images


@pytest.fixture
def no_root(monkeypatch):
    monkeypatch.delenv(paths.DATA_ENV, raising=False)


def test_resolve_rules(monkeypatch, tmp_path):
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path))
    assert paths.data_root() == str(tmp_path)
    assert paths.resolve("data:pristine") == str(tmp_path / "pristine")
    assert paths.resolve("data:/clive/labels.csv") == str(tmp_path / "clive" / "labels.csv")
    assert paths.resolve("data:") == str(tmp_path)
    assert paths.resolve("runs/x.csv") == "runs/x.csv"  # other relative paths stay relative to the working dir
    assert paths.resolve("/abs/data:x") == "/abs/data:x"
    assert paths.dataset_root("clive") == str(tmp_path / "clive")
    assert paths.dataset_root("clive", "elsewhere/clive") == "elsewhere/clive"  # an explicit root wins
    assert paths.dataset_root("clive", "data:mirror/clive") == str(tmp_path / "mirror" / "clive")
    monkeypatch.setenv(paths.DATA_ENV, "~/datasets")
    assert paths.data_root().endswith("/datasets") and not paths.data_root().startswith("~")


def test_missing_root_is_one_clear_error(no_root):
    assert paths.resolve("runs/pool") == "runs/pool"  # paths that do not need the root never ask for it
    with pytest.raises(paths.DataRootError, match=r"--data-root DIR .*KDIQA_DATA=DIR") as info:
        paths.resolve("data:pristine")
    assert "'data:pristine'" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"for dataset 'clive' \(no root given\)"):
        paths.dataset_root("clive")


def _photos(folder, n=3):
    folder.mkdir(parents=True)
    for i in range(n):
        synthetic_photo((40, 40), seed=i).save(folder / f"{i}.png")


def test_pool_sources_resolve_against_the_root(monkeypatch, tmp_path):
    _photos(tmp_path / "root" / "photos")
    (tmp_path / "root" / "photos" / "labels.csv").write_text("image,split\n0.png,train\n1.png,test\n")
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "root"))
    found = source_images(PoolSource("data:photos"))
    assert [p.rsplit("/", 1)[-1] for p in found] == ["0.png", "1.png", "2.png"]
    assert source_images(PoolSource("data:photos/labels.csv", split="train")) == [found[0]]
    items = build_items(PoolConfig(sources=[PoolSource("data:photos", distort=True)], per_image=2))
    assert len(items) == 9 and items[0].path == found[0]


def test_get_dataset_without_root_uses_the_data_root(monkeypatch, tmp_path, rated_folder, no_root):
    from kdiqa.data.datasets import get_dataset

    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "clive").symlink_to(rated_folder)
    with pytest.raises(paths.DataRootError, match="KDIQA_DATA"):
        get_dataset("clive")
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "root"))
    ds = get_dataset("clive")
    assert len(ds) == 24 and len(ds.subset("test")) == 6


def test_cli_flag_wins_over_env(monkeypatch, tmp_path, capsys):
    from kdiqa.cli import main

    _photos(tmp_path / "right" / "photos", n=2)
    (tmp_path / "wrong").mkdir()
    pool = tmp_path / "pool.yaml"
    pool.write_text("sources:\n  - path: data:photos\n    distort: true\nper_image: 1\ntypes: [jpeg]\n")
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "wrong"))
    out = tmp_path / "cache"
    args = ["materialize-pool", "--pool", str(pool), "--out", str(out), "--quiet"]
    assert main(["--data-root", str(tmp_path / "right"), *args]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["written"] == 2
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "wrong"))
    assert main(args) == 2  # the environment's root holds no photos/
    assert "photos" in capsys.readouterr().err


def test_cli_missing_root_error(no_root, tmp_path, capsys):
    from kdiqa.cli import main

    pool = tmp_path / "pool.yaml"
    pool.write_text("sources:\n  - path: data:pristine\n")
    assert main(["materialize-pool", "--pool", str(pool), "--out", str(tmp_path / "c"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kdiqa materialize-pool: error: the data root is not set")
    assert "--data-root DIR" in err and "KDIQA_DATA" in err and len(err.splitlines()) == 1


def test_speed_benchmark_data_without_and_with_a_root(no_root, monkeypatch, tmp_path):
    from kdiqa.bench.speed import SpeedOptions, _calibration_source, _parity_root

    pool = tmp_path / "pool.yaml"
    pool.write_text("sources:\n  - path: data:pristine\n")
    assert _calibration_source(str(pool)) is None  # synthetic calibration images instead
    assert _parity_root(SpeedOptions()) is None  # labelled parity skipped
    (tmp_path / "pristine").mkdir()
    (tmp_path / "clive").mkdir()
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path))
    assert _calibration_source(str(pool)) == str(pool)
    assert _parity_root(SpeedOptions()) == str(tmp_path / "clive")
    assert _parity_root(SpeedOptions(parity_root=str(tmp_path / "absent"))) is None
    assert _parity_root(SpeedOptions(parity_dataset=None)) is None
