"""docs/own-data.md, command by command, on a generated example (tiny model, small images)."""

import json
import re
from pathlib import Path

from conftest import synthetic_photo

from kdiqa.cli import main

ROOT = Path(__file__).resolve().parents[1]
# Only what makes it small and fast; everything else is the documented command.
TINY_TEACHER = ["model.name=iqa_test_tiny", "model.pretrained=none", "model.freeze=[]", "model.head_levels=[]",
                "data.crop=48", "data.batch_size=4", "data.workers=0", "optim.epochs=1", "eval.crop=48"]  # fmt: skip
TINY_STUDENT = ["labelled.crop=48", "labelled.batch_size=4", "labelled.workers=0", "matching.crop=48",
                "eval.mode=center", "eval.crop=48", "threads=1"]  # fmt: skip


def _sets(values: list[str]) -> list[str]:
    return [x for v in values for x in ("--set", v)]


def test_doc_commands_run_on_a_generated_example(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    rows = ["image,mos,split"]
    for i in range(20):
        q = i / 19
        synthetic_photo((64, 56), seed=i, quality=q).save(tmp_path / "photos" / f"{i:04d}.png")
        rows.append(f"photos/{i:04d}.png,{100 * q:.1f},{'test' if i % 4 == 0 else 'train'}")
    (tmp_path / "my_scores.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "my_photos").mkdir()
    for i in range(5):
        synthetic_photo((64, 64), seed=100 + i).save(tmp_path / "my_photos" / f"u{i}.png")

    doc = (ROOT / "docs" / "own-data.md").read_text()
    assert "kdiqa train --config configs/teacher/clive_lite2_val.yaml" in doc
    assert re.search(r"kdiqa distill --teacher runs/my_teacher/best --labelled csv:my_scores.csv --unlabelled", doc)

    config = str(ROOT / "configs" / "teacher" / "clive_lite2_val.yaml")
    teacher_args = ["--set", "data.dataset=csv:my_scores.csv", "--set", "out_dir=runs/my_teacher"]
    assert main(["train", "--config", config, *teacher_args, *_sets(TINY_TEACHER), "--quiet"]) == 0
    assert (tmp_path / "runs" / "my_teacher" / "best" / "model.safetensors").is_file()

    distill = ["distill", "--teacher", "runs/my_teacher/best", "--labelled", "csv:my_scores.csv",
               "--unlabelled", "my_photos/", "--student", "iqa_test_tiny", "--out", "runs/my_student"]  # fmt: skip
    assert main([*distill, "--views", "16", *_sets(TINY_STUDENT), "--quiet"]) == 0
    summary = json.loads((tmp_path / "runs" / "my_student" / "summary.json").read_text())
    record = json.loads((tmp_path / "runs" / "my_student" / "distill_config.json").read_text())
    assert summary["method"] == "response" and summary["student"] == "iqa_test_tiny"
    assert [s["data"] for s in record["stages"]] == ["views", "labelled", "labelled"]
    assert record["stages"][0]["views"] == 16 and record["pool"]["sources"] == [
        {"path": "my_photos/", "distort": True, "split": None}
    ]

    capsys.readouterr()
    assert main(["evaluate", "--model", "runs/my_student/best", "--dataset", "csv:my_scores.csv", "--split", "test",
                 "--mode", "center", "--crop", "48", "--bootstrap", "0", "--quiet"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{") :])["n"] == 5
    assert main(["score", "my_photos/", "--model", "runs/my_student/best", "--output", "scores.csv", "--quiet"]) == 0
    assert len((tmp_path / "scores.csv").read_text().splitlines()) == 1 + 5


def test_quick_start_needs_its_inputs(capsys):
    assert main(["distill", "--labelled", "csv:x.csv", "--quiet"]) == 2
    assert "needs --unlabelled DIR" in capsys.readouterr().err
    assert main(["distill", "--unlabelled", "photos", "--quiet"]) == 2
    assert "needs --labelled" in capsys.readouterr().err


def test_views_flag_belongs_to_the_quick_start_recipe(tmp_path, capsys):
    cfg = tmp_path / "d.yaml"
    cfg.write_text("method: none\n")
    assert main(["distill", "--config", str(cfg), "--views", "10", "--quiet"]) == 2
    assert "--views sets the quick-start recipe's length" in capsys.readouterr().err
