"""The scripts of ``benchmarks/`` (not a package), loaded as modules for their tests."""

import importlib.util
from pathlib import Path


def load_script(name: str):
    """``benchmarks/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(
        f"{name}_bench", Path(__file__).parent.parent / "benchmarks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
