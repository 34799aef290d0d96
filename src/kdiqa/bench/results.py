"""Result files of the scripts in ``benchmarks/``: a JSON document and a readable Markdown table beside it."""

from __future__ import annotations

import json
from pathlib import Path


def write_result(out: str | Path, result: dict, markdown: str) -> Path:
    """Write ``result`` as indented JSON to ``out`` and ``markdown`` to the ``.md`` beside it; returns ``out``.

    >>> import tempfile
    >>> out = write_result(Path(tempfile.mkdtemp()) / "sub" / "r.json", {"srcc": 0.75}, "| srcc |\\n")
    >>> json.loads(out.read_text()), out.with_suffix(".md").read_text()
    ({'srcc': 0.75}, '| srcc |\\n')
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(markdown)
    return out
