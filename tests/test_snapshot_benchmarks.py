"""The benchmarks that read a matching run's snapshots: the views curve and the tail mean."""

import json
from pathlib import Path

import pytest
import torch
from benchscripts import load_script as _bench

from kdiqa.checkpoint import load_model
from kdiqa.cli import main


@pytest.fixture
def snapshot_run(tmp_path, rated_folder, tiny_teacher_and_photos):
    """A tiny matching run with snapshots: 2 epochs of views, then 1 epoch on MOS."""
    teacher, photos = tiny_teacher_and_photos
    cfg = tmp_path / "d.yaml"
    cfg.write_text(f"""
student: iqa_test_tiny
teacher: {teacher}
pool: {{sources: [{{path: {photos}}}]}}
matching: {{crop: 32}}
labelled: {{dataset: "csv:{rated_folder / "labels.csv"}", crop: 32, batch_size: 4, workers: 0, val_fraction: 0.25}}
stages: [{{stage: soft, data: views, epochs: 2, views: 16}}, {{stage: task, data: labelled, epochs: 1}}]
eval: {{mode: center, crop: 32}}
snapshots: true
out_dir: {tmp_path / "run"}
threads: 1
""")
    assert main(["distill", "--config", str(cfg), "--quiet"]) == 0
    return tmp_path / "run"


def test_match_curve_reads_snapshots_in_training_order(tmp_path, snapshot_run):
    out = tmp_path / "curve.json"
    assert _bench("match_curve").main(["--runs", str(snapshot_run), "--out", str(out)]) == 0
    points = json.loads(out.read_text())["curves"][0]["points"]
    assert [p["views"] for p in points] == [8, 16, 16]  # the MOS stage adds no views
    assert [Path(p["snapshot"]).name for p in points] == ["s0e0", "s0e1", "s1e0"]
    history = [json.loads(x) for x in (snapshot_run / "history.jsonl").read_text().splitlines()]
    assert [p["val_srcc"] for p in points] == [h["val_srcc"] for h in history]
    assert all(-1 <= p["test_srcc"] <= 1 and -1 <= p["srcc_teacher_val"] <= 1 for p in points)
    assert out.with_suffix(".md").is_file() and out.with_suffix(".png").is_file()


def test_tail_mean_averages_the_last_snapshots(tmp_path, snapshot_run):
    bench = _bench("tail_average")
    out = tmp_path / "tail.json"
    assert bench.main(["--runs", str(snapshot_run), "--tail", "0.5", "--out", str(out)]) == 0
    run = json.loads(out.read_text())["runs"][0]
    assert run["snapshots"] == 3 and run["averaged"] == ["s0e1", "s1e0"]  # ceil(3 × 0.5) = 2, the last ones
    tail = load_model(snapshot_run / "tail").state_dict()
    a, b = (load_model(snapshot_run / "snapshots" / n).state_dict() for n in ("s0e1", "s1e0"))
    for key, value in tail.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (a[key].double() + b[key].double()).div(2).to(value.dtype))
    assert any(not torch.equal(a[k], b[k]) for k in a)  # the MOS epoch moved the weights: a real mean
    rows = run["rows"]
    assert list(rows) == ["best on val", "last snapshot", "tail mean"]
    assert rows["last snapshot"]["folder"].endswith("s1e0")
    assert all(-1 <= r["val_srcc"] <= 1 and -1 <= r["test_srcc"] <= 1 for r in rows.values())
    assert "| run | checkpoint |" in out.with_suffix(".md").read_text()


def test_tail_takes_at_least_two_snapshots():
    tail = _bench("tail_average").tail
    folders = [Path(f"s0e{i}") for i in range(12)]
    assert [f.name for f in tail(folders, 0.25)] == ["s0e9", "s0e10", "s0e11"]
    assert len(tail(folders, 0.01)) == 2
    with pytest.raises(ValueError, match="must be in"):
        tail(folders, 0.0)
    with pytest.raises(ValueError, match="at least two"):
        tail(folders[:1], 0.5)
