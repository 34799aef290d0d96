"""Every YAML under configs/ loads through its dataclass (so a stale key fails), names data through the data
root, and stays a small override of the defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kdiqa.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FILES = sorted(CONFIGS.rglob("*.yaml"))


def config_class(path: Path) -> type:
    """The dataclass a config is read into: by its folder, and inside ``experiments/<study>/`` by its name's prefix."""
    from kdiqa.data.pools import PoolConfig
    from kdiqa.distill.engine import DistillRunConfig
    from kdiqa.engine import TrainConfig
    from kdiqa.pretext import PretextConfig

    kinds = {
        "teacher": TrainConfig,
        "smoke": TrainConfig,
        "distill": DistillRunConfig,
        "pool": PoolConfig,
        "pretext": PretextConfig,
    }
    rel = path.relative_to(CONFIGS).parts
    kind = path.stem.split("_")[0] if rel[0] == "experiments" else rel[0]
    if kind not in kinds:
        raise AssertionError(f"{path}: no dataclass for a config in {rel[0]!r} named {path.name!r}")
    return kinds[kind]


def test_configs_are_grouped():
    assert len(FILES) >= 10
    assert not list(CONFIGS.glob("*.yaml")), "configs live in a group folder (teacher/, distill/, ...)"
    assert (CONFIGS / "README.md").is_file()
    groups = {p.relative_to(CONFIGS).parts[0] for p in FILES}
    assert {"teacher", "distill", "pool", "pretext", "experiments"} <= groups


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_config_loads_through_its_dataclass(path):
    cfg = load_config(config_class(path), path)
    text = path.read_text()
    assert "../shared" not in text and "/shared/data" not in text, "name data through the data root (data:...)"
    lines = text.splitlines()
    assert 5 <= len(lines) <= 40, f"{len(lines)} lines: keep only the keys that differ from the defaults"
    assert lines[0].startswith("# "), "a config opens with a line saying what it is"
    comments = [line for line in lines if line.lstrip().startswith("#")]
    assert len(comments) <= 3
    # no key repeats its default: the file is an override
    defaults = type(cfg)()
    for key, value in yaml.safe_load(text).items():
        if not isinstance(value, dict):
            assert getattr(cfg, key) != getattr(defaults, key), f"{key}: equals its default"


def test_distill_configs_name_their_teacher():
    from kdiqa.distill.engine import DistillRunConfig

    distill = [p for p in FILES if config_class(p) is DistillRunConfig]
    assert len(distill) == 48
    for path in distill:
        teacher = load_config(DistillRunConfig, path).teacher
        assert teacher != "teacher", f"{path.name} names the alias, whose target may change"


def test_configs_resolve_against_the_data_root(monkeypatch, tmp_path):
    from kdiqa import paths
    from kdiqa.data.pools import PoolConfig

    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path))
    pool = load_config(PoolConfig, CONFIGS / "pool" / "default.yaml")
    assert [paths.resolve(s.path) for s in pool.sources] == [
        str(tmp_path / "pristine"),
        str(tmp_path / "clive" / "labels.csv"),
    ]
