"""Adapters for the official file layouts of the common NR-IQA datasets.

Each adapter takes the dataset's root folder (as its authors distribute it) and returns an
:class:`~kdiqa.data.table.IQADataset` with absolute image paths. Official splits are used
where they exist (KonIQ-10k); otherwise a seeded, repeatable 80/20 split (``split_index``,
``seed``), content-disjoint by reference image for synthetic-distortion datasets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..registry import Registry
from .table import IQADataset, Row, random_split, read_csv

DATASETS = Registry("dataset")  # adapter name → function(root, **options) -> IQADataset


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def _mat_strings(arr) -> list[str]:
    """Flattens a MATLAB cell array of strings as returned by :func:`scipy.io.loadmat`."""
    out = []
    for item in np.asarray(arr, dtype=object).ravel():
        while isinstance(item, np.ndarray) and item.dtype == object and item.size == 1:
            item = item.ravel()[0]
        out.append(str(item.ravel()[0]) if isinstance(item, np.ndarray) else str(item))
    return out


def _finish(name, rows, score_range, higher_better, split_index, seed, has_split=False, **meta):
    if not has_split:
        rows = random_split(rows, 0.2, index=split_index, seed=seed)
    return IQADataset(name, rows, score_range, higher_better, meta=dict(meta))


@DATASETS.register("clive")
def clive(root: Path, split_index: int = 0, seed: int = 0) -> IQADataset:
    """LIVE In the Wild Challenge: ``Data/AllImages_release.mat``, ``Data/AllMOS_release.mat``,
    ``Images/``. MOS 0–100. The 7 rater-training images (``Images/trainingImages``) are left out.
    A folder with a ``labels.csv`` (``image,mos,std,split``) is read as-is (kdiqa's shared copy).
    """
    if (root / "labels.csv").is_file():
        ds = generic_csv(root / "labels.csv", score_range=(0.0, 100.0), split_index=split_index, seed=seed)
        ds.name = "clive"
        return ds
    from scipy.io import loadmat

    names = _mat_strings(
        loadmat(_require(root / "Data" / "AllImages_release.mat", "CLIVE image list"))["AllImages_release"]
    )
    mos = np.asarray(
        loadmat(_require(root / "Data" / "AllMOS_release.mat", "CLIVE MOS"))["AllMOS_release"], dtype=np.float64
    ).ravel()
    std_file = root / "Data" / "AllStdDev_release.mat"
    std = (
        np.asarray(loadmat(std_file)["AllStdDev_release"], dtype=np.float64).ravel()
        if std_file.is_file()
        else [None] * len(names)
    )
    if len(names) != len(mos):
        raise ValueError(f"{root}: {len(names)} image names but {len(mos)} MOS values")
    rows = []
    for n, m, s in zip(names, mos, std, strict=True):
        if (root / "Images" / "trainingImages" / n).exists() and not (root / "Images" / n).exists():
            continue  # the release's rater-training images have no place in the evaluation
        rows.append(Row(str(root / "Images" / n), float(m), None if s is None else float(s)))
    return _finish("clive", rows, (0.0, 100.0), True, split_index, seed)


@DATASETS.register("koniq10k")
def koniq10k(root: Path, resolution: str = "1024x768", split_index: int = 0, seed: int = 0) -> IQADataset:
    """KonIQ-10k: ``koniq10k_distributions_sets.csv`` + ``1024x768/`` (or ``512x384/``).

    MOS 1–100; the official sets training (7058) / validation (1000) / test (2015) become
    train / val / test.
    """
    table = read_csv(_require(root / "koniq10k_distributions_sets.csv", "KonIQ-10k label file"))
    img_dir = root / resolution
    sets = {"training": "train", "validation": "val", "test": "test"}
    rows = []
    for r in table:
        if r["set"] not in sets:
            raise ValueError(f"{root}: unknown KonIQ set {r['set']!r} for {r['image_name']}")
        rows.append(Row(str(img_dir / r["image_name"]), float(r["MOS"]), float(r["SD"]), sets[r["set"]]))
    return IQADataset("koniq10k", rows, (1.0, 100.0), True, meta={"resolution": resolution})


@DATASETS.register("kadid10k")
def kadid10k(root: Path, split_index: int = 0, seed: int = 0) -> IQADataset:
    """KADID-10k: ``dmos.csv`` (``dist_img,ref_img,dmos,var``) + ``images/``.

    Despite its name the ``dmos`` column is a MOS on 1–5 (higher = better). Random 80/20 splits
    are disjoint by reference image.
    """
    table = read_csv(_require(root / "dmos.csv", "KADID-10k label file"))
    rows = [
        Row(str(root / "images" / r["dist_img"]), float(r["dmos"]), float(np.sqrt(float(r["var"]))), ref=r["ref_img"])
        for r in table
    ]
    return _finish("kadid10k", rows, (1.0, 5.0), True, split_index, seed)


@DATASETS.register("spaq")
def spaq(root: Path, split_index: int = 0, seed: int = 0) -> IQADataset:
    """SPAQ: ``Annotations/MOS and Image attribute scores.xlsx`` (or a ``.csv`` export of that
    sheet, columns ``Image name``, ``MOS``) + ``TestImage/``. MOS 0–100.
    """
    ann = root / "Annotations"
    csv_file, xlsx_file = ann / "MOS and Image attribute scores.csv", ann / "MOS and Image attribute scores.xlsx"
    if csv_file.is_file():
        table = read_csv(csv_file)
    elif xlsx_file.is_file():
        table = _read_xlsx(xlsx_file)
    else:
        raise FileNotFoundError(f"SPAQ label file not found: {xlsx_file} (or {csv_file.name})")
    rows = [Row(str(root / "TestImage" / r["Image name"]), float(r["MOS"])) for r in table]
    return _finish("spaq", rows, (0.0, 100.0), True, split_index, seed)


def _read_xlsx(path: Path, sheet: str | None = None) -> list[dict[str, str]]:
    try:
        import openpyxl
    except ImportError as exc:
        raise ImportError(f"reading {path} needs openpyxl (pip install openpyxl), or export it as CSV") from exc
    wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    ws = wb[sheet] if sheet else wb.worksheets[0]
    it = ws.iter_rows(values_only=True)
    header = [str(h).strip() if h is not None else "" for h in next(it)]
    table = [{h: ("" if v is None else str(v)) for h, v in zip(header, vals, strict=False)} for vals in it]
    wb.close()
    return [r for r in table if any(r.values())]


@DATASETS.register("tid2013")
def tid2013(root: Path, split_index: int = 0, seed: int = 0) -> IQADataset:
    """TID2013: ``mos_with_names.txt`` (``MOS name`` per line) + ``distorted_images/``.

    MOS 0–9 (higher = better); splits are disjoint by reference image (``i01`` … ``i25``).
    """
    lines = _require(root / "mos_with_names.txt", "TID2013 label file").read_text().split("\n")
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{root / 'mos_with_names.txt'}:{n}: expected 'MOS name', got {line!r}")
        mos, name = float(parts[0]), parts[1]
        rows.append(Row(str(root / "distorted_images" / name), mos, ref=name[:3].lower()))
    return _finish("tid2013", rows, (0.0, 9.0), True, split_index, seed)


LIVE_FOLDERS = (("jp2k", 227), ("jpeg", 233), ("wn", 174), ("gblur", 174), ("fastfading", 174))


@DATASETS.register("live")
def live(root: Path, split_index: int = 0, seed: int = 0) -> IQADataset:
    """LIVE IQA release 2: ``dmos.mat`` (``dmos``, ``orgs``), ``refnames_all.mat`` and the folders
    ``jp2k jpeg wn gblur fastfading`` (``img1.bmp`` …). DMOS ~0–100, lower = better; reference
    images (``orgs == 1``) are left out; splits are disjoint by reference image.
    """
    from scipy.io import loadmat

    mat = loadmat(_require(root / "dmos.mat", "LIVE dmos.mat"))
    dmos, orgs = np.asarray(mat["dmos"], np.float64).ravel(), np.asarray(mat["orgs"]).ravel()
    refs = _mat_strings(loadmat(_require(root / "refnames_all.mat", "LIVE refnames_all.mat"))["refnames_all"])
    paths = [str(root / folder / f"img{i}.bmp") for folder, n in LIVE_FOLDERS for i in range(1, n + 1)]
    if not len(paths) == len(dmos) == len(orgs) == len(refs):
        raise ValueError(
            f"{root}: expected {len(paths)} entries in dmos.mat/refnames_all.mat, "
            f"got {len(dmos)}/{len(orgs)}/{len(refs)}"
        )
    rows = [Row(p, float(d), ref=r) for p, d, o, r in zip(paths, dmos, orgs, refs, strict=True) if not o]
    return _finish("live", rows, (0.0, 100.0), False, split_index, seed)


# CSIQ's label sheet names distortions differently from its folders and file names.
CSIQ_TYPES = {
    "noise": ("awgn", "AWGN"),
    "awgn": ("awgn", "AWGN"),
    "jpeg": ("jpeg", "JPEG"),
    "jpeg 2000": ("jpeg2000", "jpeg2000"),
    "jpeg2000": ("jpeg2000", "jpeg2000"),
    "f noise": ("fnoise", "fnoise"),
    "fnoise": ("fnoise", "fnoise"),
    "blur": ("blur", "BLUR"),
    "contrast": ("contrast", "contrast"),
}


@DATASETS.register("csiq")
def csiq(root: Path, split_index: int = 0, seed: int = 0) -> IQADataset:
    """CSIQ: ``csiq.DMOS.xlsx`` (sheet ``all_by_image``; or a ``csiq.DMOS.csv`` export with columns
    ``image,dst_type,dst_lev,dmos``) + ``dst_imgs/<type>/<image>.<TYPE>.<level>.png``.
    DMOS 0–1, lower = better; splits are disjoint by reference image.
    """
    if (root / "csiq.DMOS.csv").is_file():
        table = read_csv(root / "csiq.DMOS.csv")
    else:
        table = _read_xlsx(_require(root / "csiq.DMOS.xlsx", "CSIQ label file"), sheet="all_by_image")
    rows = []
    for r in table:
        kind = r["dst_type"].strip().lower()
        if kind not in CSIQ_TYPES:
            raise ValueError(f"{root}: unknown CSIQ distortion type {r['dst_type']!r}")
        folder, tag = CSIQ_TYPES[kind]
        image, level = r["image"].strip(), int(float(r["dst_lev"]))
        path = root / "dst_imgs" / folder / f"{image}.{tag}.{level}.png"
        std = float(r["dmos_std"]) if r.get("dmos_std") else None
        rows.append(Row(str(path), float(r["dmos"]), std, ref=image))
    return _finish("csiq", rows, (0.0, 1.0), False, split_index, seed)


def generic_csv(
    path: str | Path,
    root: str | Path | None = None,
    score_range: tuple[float, float] | None = None,
    higher_better: bool = True,
    split_index: int = 0,
    seed: int = 0,
) -> IQADataset:
    """A CSV with columns ``image,mos[,std,split]`` (selected as ``csv:PATH``).

    Image paths are relative to ``root`` (default: the CSV's folder). Without a ``split`` column a
    seeded 80/20 split is made. ``score_range`` defaults to the observed min/max of ``mos``.
    """
    path = Path(path)
    table = read_csv(path)
    if not table:
        raise ValueError(f"{path}: no rows")
    missing = {"image", "mos"} - set(table[0])
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; need image,mos[,std,split]")
    base = Path(root) if root is not None else path.parent
    has_split = "split" in table[0]
    rows = []
    for n, r in enumerate(table, 2):
        try:
            mos = float(r["mos"])
        except ValueError:
            raise ValueError(f"{path}:{n}: mos {r['mos']!r} is not a number") from None
        std = float(r["std"]) if r.get("std") not in (None, "") else None
        split = (r["split"] or "train") if has_split else "train"
        if split not in ("train", "val", "test"):
            raise ValueError(f"{path}:{n}: split {split!r} must be train, val or test")
        rows.append(Row(str((base / r["image"]).resolve()), mos, std, split))
    if score_range is None:
        m = np.array([r.mos for r in rows])
        score_range = (float(m.min()), float(m.max())) if m.max() > m.min() else (float(m.min()), float(m.min()) + 1)
    name = path.parent.name if path.name == "labels.csv" else path.stem
    return _finish(
        name, rows, tuple(score_range), higher_better, split_index, seed, has_split=has_split, source=str(path)
    )
