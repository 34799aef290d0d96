"""Where kdiqa finds its data: one data root, set by ``KDIQA_DATA`` or ``kdiqa --data-root DIR``.

Rules (no interpolation, no evaluation):

- a dataset with no ``root`` in its config lives at ``<data root>/<dataset name>`` (``clive`` →
  ``$KDIQA_DATA/clive``);
- a path written ``data:REL`` (pool and pretext sources, dataset roots, ``csv:`` label files) is
  ``<data root>/REL``;
- any other path is used as written (relative paths relative to the working directory).

The data root is only read when one of these rules needs it; when it is unset then, the error says
how to set it. Torch-free.

Example:
    >>> import os
    >>> os.environ[DATA_ENV] = "/data"
    >>> resolve("data:pristine"), resolve("runs/x.csv"), dataset_root("clive")
    ('/data/pristine', 'runs/x.csv', '/data/clive')
    >>> del os.environ[DATA_ENV]
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "KDIQA_DATA"
DATA_PREFIX = "data:"


class DataRootError(ValueError):
    """A path needs the data root, and none is set."""


def set_data_root(path: str | Path) -> None:
    """Sets the data root for this process and the processes it starts (``kdiqa --data-root``)."""
    os.environ[DATA_ENV] = str(path)


def data_root(needed_for: str = "") -> str:
    """The data root (as given, ``~`` expanded); :class:`DataRootError` if unset."""
    value = os.environ.get(DATA_ENV, "").strip()
    if not value:
        what = f" for {needed_for}" if needed_for else ""
        raise DataRootError(
            f"the data root is not set{what}: use `kdiqa --data-root DIR ...` or `export {DATA_ENV}=DIR` "
            "(the folder holding one sub-folder per dataset, e.g. DIR/clive)"
        )
    return os.path.expanduser(value)


def resolve(path: str | Path) -> str:
    """``data:REL`` → ``<data root>/REL``; any other path unchanged."""
    text = str(path)
    if not text.startswith(DATA_PREFIX):
        return text
    rel = text[len(DATA_PREFIX) :].lstrip("/")
    root = data_root(needed_for=repr(text))
    return os.path.join(root, rel) if rel else root


def dataset_root(name: str, root: str | Path | None = None) -> str:
    """A dataset's folder: ``root`` (resolved) if given, else ``<data root>/<name>``."""
    if root is not None:
        return resolve(root)
    return os.path.join(data_root(needed_for=f"dataset {name!r} (no root given)"), name)
