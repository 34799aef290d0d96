"""The version is written once (``kdiqa.__version__``), and ``python -m kdiqa`` is the command line."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import kdiqa
from kdiqa.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_reads_the_package_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "kdiqa.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)?", kdiqa.__version__)
    assert importlib.metadata.version("kdiqa") == kdiqa.__version__


def test_package_metadata_follows_version_attribute(tmp_path):
    """setuptools builds the metadata from ``__version__`` alone (no second literal to keep in step)."""
    build_meta = pytest.importorskip("setuptools.build_meta", reason="needs setuptools to build metadata")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    init = (ROOT / "src" / "kdiqa" / "__init__.py").read_text()
    (tmp_path / "src" / "kdiqa").mkdir(parents=True)
    (tmp_path / "src" / "kdiqa" / "__init__.py").write_text(
        re.sub(r'__version__ = ".*"', '__version__ = "9.8.7"', init)
    )
    out = tmp_path / "meta"
    out.mkdir()
    cwd = Path.cwd()
    try:
        os.chdir(tmp_path)
        dist_info = build_meta.prepare_metadata_for_build_wheel(str(out))
    finally:
        os.chdir(cwd)
    assert "Version: 9.8.7" in (out / dist_info / "METADATA").read_text().splitlines()


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"kdiqa {kdiqa.__version__}"


def test_python_dash_m_kdiqa():
    run = subprocess.run(
        [sys.executable, "-m", "kdiqa", "--version"], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0 and run.stdout.strip() == f"kdiqa {kdiqa.__version__}"
    run = subprocess.run(
        [sys.executable, "-m", "kdiqa", "list-models", "iqa_test*"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0 and run.stdout.split() == ["iqa_test_tiny"]
    run = subprocess.run(
        [sys.executable, "-m", "kdiqa", "no-such-command"], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 2 and "invalid choice" in run.stderr
