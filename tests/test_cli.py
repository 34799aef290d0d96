"""End-to-end runs of the command line on the tiny model and generated data."""

import csv
import json
from pathlib import Path

import pytest

from kdiqa.cli import main

SMOKE_CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "smoke" / "tiny.yaml")


def _train(rated_folder, out, *extra):
    return main(
        [
            "train",
            "--config",
            SMOKE_CONFIG,
            "--quiet",
            "--set",
            f"data.dataset=csv:{rated_folder / 'labels.csv'}",
            "--set",
            f"out_dir={out}",
            *extra,
        ]
    )


def test_train_evaluate_score(rated_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(rated_folder, out) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["train_images"] == 14 and summary["val_images"] == 4
    assert summary["best_by"] == "val_srcc" and -1 <= summary["best_val_srcc"] <= 1
    assert (out / "best" / "model.safetensors").is_file() and (out / "last" / "train_state.json").is_file()
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert len(history) == 2
    best = max(history, key=lambda h: h["val_srcc"])  # the first of equals, as training keeps it
    assert json.loads((out / "best" / "config.json").read_text())["epoch"] == best["epoch"]
    assert summary["best_val_srcc"] == pytest.approx(best["val_srcc"])
    # best/ holds the weights that scored it: re-evaluated on the run's own validation images, as it saw them
    val = ["--split", "val", "--val-fraction", "0.2", "--mode", "center", "--crop", "48", "--bootstrap", "0"]
    labels = f"csv:{rated_folder / 'labels.csv'}"
    res = tmp_path / "val.json"
    assert (
        main(["evaluate", "--model", str(out / "best"), "--dataset", labels, *val, "--output", str(res), "--quiet"])
        == 0
    )
    assert json.loads(res.read_text())["srcc"] == pytest.approx(best["val_srcc"], abs=1e-6)

    res = tmp_path / "outputs" / "res.json"
    plot = tmp_path / "outputs" / "scatter.png"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(out / "best"),
                "--dataset",
                f"csv:{rated_folder / 'labels.csv'}",
                "--split",
                "test",
                "--output",
                str(res),
                "--plot",
                str(plot),
                "--bootstrap",
                "50",
                "--quiet",
            ]
        )
        == 0
    )
    result = json.loads(res.read_text())
    for key in ("srcc", "plcc", "krcc", "rmse", "n"):
        assert key in result
    assert result["n"] == 6 and -1 <= result["srcc"] <= 1 and len(result["predictions"]) == 6
    assert plot.stat().st_size > 1000

    csv_out = tmp_path / "outputs" / "scores.csv"
    assert main(["score", str(rated_folder), "--model", str(out / "best"), "--output", str(csv_out), "--quiet"]) == 0
    rows = list(csv.DictReader(csv_out.read_text().splitlines()))
    assert len(rows) == 24 and all(r["score"] and not r["error"] for r in rows)


def _evaluated_images(tmp_path, *args) -> list[str]:
    out = tmp_path / "eval.json"
    assert (
        main(["evaluate", "--model", "iqa_test_tiny", "--bootstrap", "0", "--quiet", "--output", str(out), *args]) == 0
    )
    return sorted(p["image"] for p in json.loads(out.read_text())["predictions"])


def test_evaluate_reproduces_the_training_split(rated_folder, tmp_path, capsys):
    """`evaluate` carves splits as `train` does, so a run is never scored on its own training images."""
    from kdiqa.data.datasets import get_dataset
    from kdiqa.engine import DataSection, labelled_splits

    labels = f"csv:{rated_folder / 'labels.csv'}"
    _, train, val = labelled_splits(DataSection(dataset=labels, val_fraction=0.2, val_seed=3))
    got = _evaluated_images(tmp_path, "--dataset", labels, "--split", "val", "--val-fraction", "0.2", "--val-seed", "3")
    assert got == sorted(r.path for r in val.rows) and len(got) == 4
    got = _evaluated_images(
        tmp_path, "--dataset", labels, "--split", "train", "--val-fraction", "0.2", "--val-seed", "3"
    )
    assert got == sorted(r.path for r in train.rows) and len(got) == 14  # the validation images left out

    assert main(["evaluate", "--model", "iqa_test_tiny", "--dataset", labels, "--split", "val", "--quiet"]) == 2
    assert "has no val split: carve one as training did, e.g. --val-fraction" in capsys.readouterr().err
    assert main(["evaluate", "--model", "iqa_test_tiny", "--dataset", labels, "--val-fraction", "-0.1"]) == 2
    assert "val_fraction must be in [0, 1)" in capsys.readouterr().err

    # No split column: the seeded 80/20 split is chosen by --split-index / --split-seed, as data.split_* in training.
    (rated_folder / "nosplit.csv").write_text(
        "\n".join(",".join(line.split(",")[:2]) for line in (rated_folder / "labels.csv").read_text().splitlines())
    )
    labels = f"csv:{rated_folder / 'nosplit.csv'}"
    tests = {}
    for index in (0, 1):
        tests[index] = _evaluated_images(
            tmp_path, "--dataset", labels, "--split-index", str(index), "--split-seed", "5"
        )
        expected = get_dataset(labels, split_index=index, seed=5).subset("test").rows
        assert tests[index] == sorted(r.path for r in expected) and len(expected) == 5
    assert tests[0] != tests[1]


def test_train_without_validation_split(rated_folder, tmp_path):
    out = tmp_path / "run"
    assert _train(rated_folder, out, "--set", "data.val_fraction=0", "--set", "optim.epochs=1") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["val_images"] == 0 and summary["train_images"] == 18
    assert summary["best_val_srcc"] is None and summary["best_by"].startswith("lowest train_loss")


def test_train_init_must_match_head_levels(rated_folder, tmp_path, capsys):
    first = tmp_path / "first"
    assert _train(rated_folder, first, "--set", "optim.epochs=1") == 0
    again = ["--set", f"model.init={first / 'best'}", "--set", "model.head_levels=[1, 2]", "--set", "optim.epochs=1"]
    assert _train(rated_folder, tmp_path / "second", *again) == 2
    assert "has head_levels [], the config asks for [1, 2]" in capsys.readouterr().err


def test_train_resumes_from_last(rated_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(rated_folder, out, "--set", "optim.epochs=1") == 0
    assert _train(rated_folder, out, "--set", "optim.epochs=2") == 0
    assert "resumed from" in capsys.readouterr().out
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 1]
    # another recipe in the same folder is refused, naming what differs; the folder keeps its config
    assert _train(rated_folder, out, "--set", "optim.epochs=2", "--set", "optim.lr=0.01", "--set", "threads=1") == 2
    assert "differs in optim.lr)" in capsys.readouterr().err
    assert json.loads((out / "train_config.json").read_text())["optim"]["lr"] != 0.01
    assert _train(rated_folder, out, "--set", "optim.epochs=3", "--set", "optim.lr=0.01", "--set", "resume=false") == 0


def test_train_with_weight_ema(rated_folder, tmp_path, capsys):
    from safetensors.torch import load_file

    out = tmp_path / "run"
    ema = ["--set", "optim.ema_decay=0.9"]
    assert _train(rated_folder, out, *ema, "--set", "optim.epochs=1") == 0
    assert _train(rated_folder, out, *ema, "--set", "optim.epochs=2") == 0
    assert "resumed from" in capsys.readouterr().out
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 1]
    assert all({"val_srcc", "raw_val_srcc", "val_plcc", "raw_val_plcc"} <= set(h) for h in history)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final"] == str(out / "ema")
    ema_w, raw_w = (load_file(str(out / d / "model.safetensors")) for d in ("ema", "last"))
    assert ema_w.keys() == raw_w.keys()
    # The average lags the raw weights: some trained tensor differs, none is wildly off.
    diffs = [float((ema_w[k] - raw_w[k]).abs().max()) for k in raw_w if raw_w[k].is_floating_point()]
    assert max(diffs) > 1e-6 and max(diffs) < 10

    # last/ keeps its own copy of the average, so a deleted ema/ folder does not stop a resume ...
    import shutil

    shutil.rmtree(out / "ema")
    assert _train(rated_folder, out, *ema, "--set", "optim.epochs=3") == 0
    assert (out / "ema" / "model.safetensors").is_file() and (out / "last" / "ema.safetensors").is_file()
    # ... but an EMA run with no average left is a clear error, not a silent restart of the average.
    shutil.rmtree(out / "ema")
    (out / "last" / "ema.safetensors").unlink()
    assert _train(rated_folder, out, *ema, "--set", "optim.epochs=4") == 2
    assert "has no ema/ checkpoint" in capsys.readouterr().err


def test_train_rejects_bad_ema_decay(rated_folder, tmp_path, capsys):
    assert _train(rated_folder, tmp_path / "run", "--set", "optim.ema_decay=1.5") == 2
    assert "optim.ema_decay must be in (0, 1)" in capsys.readouterr().err


def test_score_reports_failures_and_keeps_going(rated_folder, tmp_path, capsys):
    (rated_folder / "broken.jpg").write_text("not an image")
    (rated_folder / "empty.png").write_bytes(b"")
    out = tmp_path / "s.json"
    code = main(
        [
            "score",
            str(rated_folder / "img_0*.png"),
            str(rated_folder / "broken.jpg"),
            str(rated_folder / "empty.png"),
            str(tmp_path / "missing.png"),
            "--model",
            "iqa_test_tiny",
            "--output",
            str(out),
            "--quiet",
        ]
    )
    assert code == 1
    results = json.loads(out.read_text())["results"]
    errors = {r["path"].split("/")[-1]: r["error"] for r in results if r["error"]}
    assert len([r for r in results if r["score"] is not None]) == 10
    assert errors["broken.jpg"].startswith("not an image") and errors["empty.png"] == "file is empty"
    assert errors["missing.png"] == "file not found"
    err = capsys.readouterr().err
    assert "3 failed" in err and "broken.jpg" in err


def test_score_csv_resume(rated_folder, tmp_path, capsys):
    out = tmp_path / "s.csv"
    first = sorted(rated_folder.glob("img_0*.png"))[:4]
    assert main(["score", *map(str, first), "--model", "iqa_test_tiny", "--output", str(out), "--quiet"]) == 0
    assert (
        main(["score", str(rated_folder), "--model", "iqa_test_tiny", "--output", str(out), "--resume", "--quiet"]) == 0
    )
    assert "4 image(s) already scored" in capsys.readouterr().err
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert len(rows) == 24 and len({r["path"] for r in rows}) == 24
    # without --resume the file starts afresh (no duplicated rows)
    assert main(["score", *map(str, first), "--model", "iqa_test_tiny", "--output", str(out), "--quiet"]) == 0
    assert len(list(csv.DictReader(out.read_text().splitlines()))) == 4
    assert main(["score", str(first[0]), "--model", "iqa_test_tiny", "--output", str(tmp_path / "x.txt")]) == 2
    assert main(["score", str(first[0]), "--model", "iqa_test_tiny", "--resume"]) == 2
    assert "--resume needs a .csv" in capsys.readouterr().err


def test_cli_user_errors_are_one_line(tmp_path, capsys):
    assert main(["score", "x.png", "--model", "iqa_tset_tiny"]) == 2
    assert "Did you mean 'iqa_test_tiny'" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  epoch: 1\n")
    assert main(["train", "--config", str(bad)]) == 2
    assert "did you mean 'optim.epochs'" in capsys.readouterr().err


def test_list_models(capsys):
    assert main(["list-models", "-v", "iqa_test*"]) == 0
    assert "iqa_test_tiny\ttest_efficientnet" in capsys.readouterr().out


@pytest.mark.parametrize("cmd", [["--version"]])
def test_version(cmd, capsys):
    with pytest.raises(SystemExit) as info:
        main(cmd)
    assert info.value.code == 0 and "kdiqa" in capsys.readouterr().out
