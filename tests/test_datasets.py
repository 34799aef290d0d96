from dataclasses import replace

import numpy as np
import pytest
from conftest import shared_path
from scipy.io import savemat

from kdiqa.data.datasets import IQADataset, Row, get_dataset, random_split


def _cell(strings):
    arr = np.empty((len(strings), 1), dtype=object)
    for i, s in enumerate(strings):
        arr[i, 0] = s
    return arr


def test_clive_release_layout(tmp_path):
    (tmp_path / "Data").mkdir()
    (tmp_path / "Images" / "trainingImages").mkdir(parents=True)
    names = ["t1.bmp", "a.JPG", "b.bmp", "c.JPG", "d.JPG"]
    (tmp_path / "Images" / "trainingImages" / "t1.bmp").write_bytes(b"x")
    savemat(tmp_path / "Data" / "AllImages_release.mat", {"AllImages_release": _cell(names)})
    savemat(tmp_path / "Data" / "AllMOS_release.mat", {"AllMOS_release": np.array([[50, 10, 20, 30, 40.5]])})
    savemat(tmp_path / "Data" / "AllStdDev_release.mat", {"AllStdDev_release": np.array([[1, 2, 3, 4, 5.0]])})
    ds = get_dataset("clive", tmp_path)
    assert [r.path.split("/")[-1] for r in ds.rows] == ["a.JPG", "b.bmp", "c.JPG", "d.JPG"]
    assert [r.mos for r in ds.rows] == [10, 20, 30, 40.5] and ds.rows[0].std == 2
    assert ds.score_range == (0.0, 100.0) and ds.higher_better
    assert {r.split for r in ds.rows} <= {"train", "test"}


def test_clive_shared_copy():
    root = shared_path("clive")
    ds = get_dataset("clive", root)
    assert len(ds) == 930
    assert len(ds.subset("train")) == 700 and len(ds.subset("test")) == 230
    assert all(0 <= r.mos <= 100 for r in ds.rows)


def test_koniq_real_label_file():
    root = shared_path("labels_only", "koniq10k")
    ds = get_dataset("koniq10k", root)
    assert len(ds) == 10073
    counts = {s: len(ds.subset(s)) for s in ("train", "val", "test")}
    assert counts == {"train": 7058, "val": 1000, "test": 2015}
    assert ds.rows[0].path.endswith("1024x768/10004473376.jpg")
    assert ds.rows[0].mos == pytest.approx(77.3836206897)
    mos = ds.mos_array()
    assert mos.min() >= 1 and mos.max() <= 100
    small = get_dataset("koniq10k", root, resolution="512x384")
    assert "512x384" in small.rows[0].path


def test_koniq_fixture(tmp_path):
    (tmp_path / "koniq10k_distributions_sets.csv").write_text(
        "image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,set\n"
        "a.jpg,0,0,0.2,0.7,0.1,100,70.5,0.5,training\n"
        "b.jpg,0,0,0.2,0.7,0.1,100,40.0,0.6,validation\n"
        "c.jpg,0,0,0.2,0.7,0.1,100,20.0,0.7,test\n"
    )
    ds = get_dataset("koniq10k", tmp_path)
    assert [r.split for r in ds.rows] == ["train", "val", "test"]
    assert ds.normalize(100.0) == 1.0 and ds.normalize(1.0) == 0.0


def test_kadid_split_is_reference_disjoint_and_repeatable(tmp_path):
    lines = ["dist_img,ref_img,dmos,var"]
    for ref in range(10):
        for d in range(6):
            lines.append(f"I{ref:02d}_{d:02d}_01.png,I{ref:02d}.png,{1 + (d % 5) * 0.8:.2f},0.25")
    (tmp_path / "dmos.csv").write_text("\n".join(lines) + "\n")
    ds = get_dataset("kadid10k", tmp_path, split_index=3, seed=7)
    train_refs = {r.ref for r in ds.subset("train").rows}
    test_refs = {r.ref for r in ds.subset("test").rows}
    assert not train_refs & test_refs and len(test_refs) == 2  # 20 % of 10 references
    again = get_dataset("kadid10k", tmp_path, split_index=3, seed=7)
    assert [r.split for r in again.rows] == [r.split for r in ds.rows]
    splits = {
        frozenset(r.ref for r in get_dataset("kadid10k", tmp_path, split_index=i).subset("test").rows)
        for i in range(10)
    }
    assert len(splits) > 3  # different split indices give different splits
    assert ds.score_range == (1.0, 5.0) and ds.rows[0].std == pytest.approx(0.5)


def test_tid2013(tmp_path):
    (tmp_path / "mos_with_names.txt").write_text("5.51429 i01_01_1.bmp\n4.2 I02_01_2.BMP\n\n")
    ds = get_dataset("tid2013", tmp_path)
    assert [r.ref for r in ds.rows] == ["i01", "i02"]
    assert ds.rows[0].path.endswith("distorted_images/i01_01_1.bmp") and ds.rows[0].mos == pytest.approx(5.51429)
    (tmp_path / "mos_with_names.txt").write_text("oops\n")
    with pytest.raises(ValueError, match=r"mos_with_names\.txt:1"):
        get_dataset("tid2013", tmp_path)


def test_tid2013_split_is_reference_disjoint(tmp_path):
    lines = [f"{1 + (d % 7) * 0.9:.3f} i{ref:02d}_{d:02d}_{1 + d % 5}.bmp" for ref in range(1, 26) for d in range(8)]
    (tmp_path / "mos_with_names.txt").write_text("\n".join(lines) + "\n")
    ds = get_dataset("tid2013", tmp_path, split_index=2, seed=1)
    train_refs, test_refs = ({r.ref for r in ds.subset(s).rows} for s in ("train", "test"))
    assert not train_refs & test_refs and len(test_refs) == 5 and len(train_refs) == 20  # 20 % of 25 references


def test_live_release2_dmos(tmp_path):
    n = 227 + 233 + 174 * 3
    dmos = np.linspace(0, 100, n)
    orgs = np.zeros(n)
    orgs[::10] = 1
    refs = [f"ref{i % 29}.bmp" for i in range(n)]
    savemat(tmp_path / "dmos.mat", {"dmos": dmos[None], "orgs": orgs[None]})
    savemat(tmp_path / "refnames_all.mat", {"refnames_all": _cell(refs).T})
    ds = get_dataset("live", tmp_path)
    assert len(ds) == n - int(orgs.sum())
    assert ds.rows[0].path.endswith("jp2k/img2.bmp")
    assert ds.rows[-1].path.endswith("fastfading/img174.bmp")
    assert not ds.higher_better and ds.normalize(0.0) == 1.0  # DMOS 0 is the best quality
    assert ds.denormalize(ds.normalize(37.0)) == pytest.approx(37.0)
    assert not {r.ref for r in ds.subset("train").rows} & {r.ref for r in ds.subset("test").rows}


def test_csiq_csv_export(tmp_path):
    (tmp_path / "csiq.DMOS.csv").write_text(
        "image,dst_idx,dst_type,dst_lev,dmos_std,dmos\n"
        "1600,1,noise,1,0.02,0.06\n1600,2,jpeg 2000,3,0.03,0.3\nfisher,3,f noise,2,0.01,0.2\n"
        "fisher,4,blur,5,0.1,0.9\nlake,5,contrast,1,0.05,0.1\nlake,6,jpeg,4,0.05,0.5\n"
    )
    ds = get_dataset("csiq", tmp_path)
    assert ds.rows[0].path.endswith("dst_imgs/awgn/1600.AWGN.1.png")
    assert ds.rows[1].path.endswith("dst_imgs/jpeg2000/1600.jpeg2000.3.png")
    assert ds.rows[2].path.endswith("dst_imgs/fnoise/fisher.fnoise.2.png")
    assert not ds.higher_better and ds.score_range == (0.0, 1.0)
    train_refs, test_refs = ({r.ref for r in ds.subset(s).rows} for s in ("train", "test"))
    assert not train_refs & test_refs and len(train_refs | test_refs) == 3


def test_csiq_official_xlsx(tmp_path):
    openpyxl = pytest.importorskip("openpyxl", reason="openpyxl is needed to read CSIQ's .xlsx")
    wb = openpyxl.Workbook()
    wb.active.title = "experiment"  # the release has several sheets: the labels are on all_by_image
    wb.active.append(["not", "the", "labels"])
    sheet = wb.create_sheet("all_by_image")
    sheet.append(["image", "dst_idx", "dst_type", "dst_lev", "dmos_std", "dmos"])
    sheet.append([1600, 1, "noise", 1, 0.02, 0.06])
    sheet.append(["fisher", 4, "blur", 5, None, 0.9])
    wb.save(tmp_path / "csiq.DMOS.xlsx")
    ds = get_dataset("csiq", tmp_path)
    assert ds.rows[0].path.endswith("dst_imgs/awgn/1600.AWGN.1.png") and ds.rows[0].std == pytest.approx(0.02)
    assert ds.rows[1].path.endswith("dst_imgs/blur/fisher.BLUR.5.png") and ds.rows[1].std is None
    assert [r.mos for r in ds.rows] == [0.06, 0.9] and [r.ref for r in ds.rows] == ["1600", "fisher"]


def test_spaq_csv_and_xlsx(tmp_path):
    ann = tmp_path / "Annotations"
    ann.mkdir()
    (ann / "MOS and Image attribute scores.csv").write_text(
        "Image name,MOS,Brightness\n00001.jpg,42.5,50\n00002.jpg,80,60\n"
    )
    ds = get_dataset("spaq", tmp_path)
    assert ds.rows[0].path.endswith("TestImage/00001.jpg") and ds.rows[1].mos == 80
    openpyxl = pytest.importorskip("openpyxl", reason="openpyxl is needed to read SPAQ's .xlsx")
    (ann / "MOS and Image attribute scores.csv").unlink()
    wb = openpyxl.Workbook()
    wb.active.append(["Image name", "MOS", "Brightness"])
    wb.active.append(["00003.jpg", 12.5, 3])
    wb.save(ann / "MOS and Image attribute scores.xlsx")
    ds = get_dataset("spaq", tmp_path)
    assert ds.rows[0].path.endswith("TestImage/00003.jpg") and ds.rows[0].mos == 12.5


def test_generic_csv(rated_folder):
    ds = get_dataset(f"csv:{rated_folder / 'labels.csv'}")
    assert len(ds) == 24 and len(ds.subset("test")) == 6
    assert ds.rows[0].path == str((rated_folder / "img_00.png").resolve())
    (rated_folder / "nosplit.csv").write_text(
        "image,mos\nimg_00.png,3\nimg_01.png,5\nimg_02.png,1\nimg_03.png,2\nimg_04.png,4\n"
    )
    ds2 = get_dataset(f"csv:{rated_folder / 'nosplit.csv'}")
    assert ds2.score_range == (1.0, 5.0) and len(ds2.subset("test")) == 1
    (rated_folder / "bad.csv").write_text("file,score\na.png,1\n")
    with pytest.raises(ValueError, match="missing column"):
        get_dataset(f"csv:{rated_folder / 'bad.csv'}")


def test_unknown_dataset_did_you_mean():
    with pytest.raises(KeyError, match="Did you mean 'koniq10k'"):
        get_dataset("koniq", "/nowhere")


def test_carve_val_and_subset():
    rows = [Row(f"{i}.png", float(i), split="test" if i < 10 else "train") for i in range(50)]
    ds = IQADataset("toy", rows, (0, 50)).carve_val(0.25, seed=1)
    assert len(ds.subset("val")) == 10 and len(ds.subset("test")) == 10 and len(ds.subset("train")) == 30
    assert all(int(r.path[:-4]) >= 10 for r in ds.subset("val").rows)  # never taken from test
    with pytest.raises(ValueError, match="no split"):
        ds.subset("validation")


def test_keep_labels_is_seeded_nested_and_reference_disjoint():
    rows = [Row(f"{i}.png", float(i), split="test" if i < 8 else "train", ref=f"r{i // 2}") for i in range(48)]
    ds = IQADataset("toy", rows, (0, 50)).carve_val(0.25, seed=0)  # 20 train refs: 5 to val, 15 left
    half, quarter = ds.keep_labels(0.5, seed=3), ds.keep_labels(0.25, seed=3)
    for part, n_refs in ((half, 8), (quarter, 4)):  # round(0.5 · 15) = 8, round(0.25 · 15) = 4
        assert len({r.ref for r in part.subset("train").rows}) == n_refs
        assert len(part.subset("train")) + len(part.subset("unlabelled")) == len(ds.subset("train")) == 30
        assert part.subset("val").rows == ds.subset("val").rows and part.subset("test").rows == ds.subset("test").rows
        assert not {r.ref for r in part.subset("train").rows} & {r.ref for r in part.subset("unlabelled").rows}
    assert set(quarter.subset("train").rows) < set(half.subset("train").rows)  # nested
    assert half.subset("train").rows == ds.keep_labels(0.5, seed=3).subset("train").rows  # repeatable
    assert half.subset("train").rows != ds.keep_labels(0.5, seed=4).subset("train").rows
    assert len(ds.keep_labels(0.001).subset("train")) == 2  # never no labels: one reference group remains
    assert ds.keep_labels(1.0).rows == ds.rows
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="label fraction must be in"):
            ds.keep_labels(bad)


def test_labelled_splits_keep_validation_fixed_across_label_fractions(rated_folder):
    from kdiqa.engine import DataSection, labelled_splits

    data = DataSection(dataset=f"csv:{rated_folder / 'labels.csv'}", val_fraction=0.25)
    _, full_train, full_val = labelled_splits(data)
    ds, train, val = labelled_splits(replace(data, label_fraction=0.5))
    assert (len(full_train), len(full_val)) == (14, 4) and val.rows == full_val.rows  # 18 train rows: 4 to val
    assert len(train) == 7 and len(ds.subset("unlabelled")) == 7 and set(train.rows) < set(full_train.rows)
    assert labelled_splits(replace(data, val_fraction=0.0))[2] is None
    with pytest.raises(ValueError, match="label fraction must be in"):
        labelled_splits(replace(data, label_fraction=1.5))


def test_random_split_repeatable():
    rows = [Row(f"{i}.png", float(i)) for i in range(100)]
    a, b = random_split(rows, 0.2, index=2, seed=0), random_split(rows, 0.2, index=2, seed=0)
    assert [r.split for r in a] == [r.split for r in b]
    assert sum(r.split == "test" for r in a) == 20


@pytest.fixture
def test_only_csv(rated_folder):
    """The rated folder's test rows alone: a CSV without a single train row."""
    lines = (rated_folder / "labels.csv").read_text().splitlines()
    (rated_folder / "test_only.csv").write_text("\n".join([lines[0], *(x for x in lines[1:] if x.endswith(",test"))]))
    return rated_folder / "test_only.csv"


def test_csv_of_test_rows_only(test_only_csv):
    from kdiqa.data.datasets import TorchIQADataset

    ds = get_dataset(f"csv:{test_only_csv}")
    assert len(ds) == 6 and {r.split for r in ds.rows} == {"test"}
    assert len(ds.subset("test")) == 6 and len(ds.subset("all")) == 6 and len(ds.subset(None)) == 6
    assert len(ds.subset("train")) == 0 and len(ds.subset("val")) == 0  # standard splits: empty, not an error
    assert ds.carve_val(0.2, seed=0).rows == ds.rows  # nothing to carve from: unchanged
    with pytest.raises(ValueError, match=r"has no split \['tset'\]; it has \['test'\]"):
        ds.subset("tset")
    with pytest.raises(ValueError, match=r"has no rows in split \['train'\] to load"):
        TorchIQADataset(ds.subset("train"), transform=lambda img: img)


@pytest.mark.parametrize("split", ["test", "all"])
def test_evaluate_csv_of_test_rows_only(test_only_csv, tiny_teacher_and_photos, capsys, split):
    import json

    from kdiqa.cli import main

    model, _ = tiny_teacher_and_photos
    rc = main(["evaluate", "--dataset", f"csv:{test_only_csv}", "--model", str(model), "--split", split])
    assert rc == 0
    out = capsys.readouterr().out
    result = json.loads(out[out.index("{") :])
    assert result["n"] == 6 and -1 <= result["srcc"] <= 1


def test_evaluate_names_an_empty_split(test_only_csv, tiny_teacher_and_photos, capsys):
    from kdiqa.cli import main

    model, _ = tiny_teacher_and_photos
    rc = main(["evaluate", "--dataset", f"csv:{test_only_csv}", "--model", str(model), "--split", "train"])
    assert rc == 2 and "has no train split (it has: test)" in capsys.readouterr().err


def test_carve_val_then_labels(rated_folder, test_only_csv):
    labels = f"csv:{rated_folder / 'labels.csv'}"
    carved = get_dataset(labels).carve(0.25, val_seed=3, label_fraction=0.5, label_seed=1)
    assert carved.rows == get_dataset(labels).carve_val(0.25, seed=3).keep_labels(0.5, seed=1).rows
    assert [len(carved.subset(s)) for s in ("train", "val", "test", "unlabelled")] == [7, 4, 6, 7]
    assert get_dataset(labels).carve().rows == get_dataset(labels).rows
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\)"):
        get_dataset(labels).carve(1.0)
    only_test = get_dataset(f"csv:{test_only_csv}")
    assert only_test.carve(0.25, label_fraction=0.5).rows == only_test.rows
