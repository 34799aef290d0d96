"""`kdiqa benchmark` end to end on the tiny model (quick mode): rows, summary keys, Markdown table."""

import json
import shutil
from pathlib import Path

import pytest
from benchscripts import load_script as _bench

from kdiqa.cli import main


def test_benchmark_quick_on_tiny_models(tmp_path, capsys):
    out = tmp_path / "speed.json"
    args = ["benchmark", "--quick", "--teacher", "iqa_test_tiny", "--student", "iqa_test_tiny", "--students"]
    args += ["iqa_test_tiny", "--sizes", "64", "96", "--threads", "1", "--peers", "bogus", "--out", str(out)]
    args += ["--calibration", str(tmp_path / "missing"), "--parity-dataset", "none"]
    assert main(args) == 0
    result = json.loads(out.read_text())
    for key in ("student_onnx_fp32_96_images_per_s", "student_vs_teacher", "int8_srcc_drop", "peak_fp32"):
        assert key in result
    assert result["int8_srcc_drop"] is None and "random weights" in result["int8_srcc_drop_basis"]
    assert result["student_int8_size_ratio"] > 1
    rows = result["rows"]
    assert {(r["role"], r["backend"], r["size"]) for r in rows} == {
        (role, backend, size)
        for role in ("teacher", "student (default)")
        for backend in ("torch", "onnx_fp32", "onnx_int8")
        for size in (64, 96)
    }
    assert all(r["p50_ms"] > 0 and r["macs"] > 0 and r["peak_fraction"] > 0 for r in rows)
    assert result["skipped"][0]["model"] == "bogus" and "unknown peer" in result["skipped"][0]["reason"]
    table = out.with_suffix(".md").read_text()
    assert "QUICK" in table and table.count("| iqa_test_tiny |") == 12


def test_distill_ablation_refuses_to_mix_teachers(tmp_path):
    bench = _bench("distill_clive")
    teacher = {"model": "t", "fingerprint": "aaaa", "srcc": 0.8, "plcc": 0.8}
    out, runs = tmp_path / "r.json", tmp_path / "runs"
    bench.check_same_teacher(teacher, out, {}, runs)  # a fresh ablation records its teacher
    assert json.loads((runs / "teacher.json").read_text())["fingerprint"] == "aaaa"
    bench.check_same_teacher(teacher, out, {"runs": [{}], "teacher": dict(teacher)}, runs)  # same teacher: fine
    with pytest.raises(SystemExit, match="runs distilled from another teacher"):
        bench.check_same_teacher({**teacher, "fingerprint": "bbbb"}, out, {}, runs)
    with pytest.raises(SystemExit, match=r"r\.json holds runs distilled from another teacher \(fingerprint None"):
        bench.check_same_teacher(teacher, out, {"runs": [{}], "teacher": {"srcc": 0.7}}, tmp_path / "other")


def test_distill_ablation_configs_per_student():
    from types import SimpleNamespace

    from kdiqa.config import load_config
    from kdiqa.distill.engine import DistillRunConfig

    bench = _bench("distill_clive")
    args = SimpleNamespace(configs=bench.parse_configs(["a.yaml", "iqa_effnet_lite0=b.yaml"]))
    assert bench.config_for(args, "iqa_effnet_lite0") == "b.yaml"
    assert bench.config_for(args, "iqa_lcnet_050") == "a.yaml"
    # every student whose backbone has offline ImageNet weights starts from them, a cut Lite0 included
    assert [bench.pretrained_for(s) for s in ("iqa_effnet_lite0", "iqa_effnet_lite0_s4", "iqa_lcnet_050")] == [
        "imagenet",
        "imagenet",
        "none",
    ]
    with pytest.raises(SystemExit, match="two files for every student"):
        bench.parse_configs(["a.yaml", "c.yaml"])
    with pytest.raises(SystemExit, match="no file for iqa_lcnet_050"):
        bench.config_for(SimpleNamespace(configs={"iqa_effnet_lite0": "b.yaml"}), "iqa_lcnet_050")
    root = Path(__file__).parent.parent / "configs"
    small, *others = (load_config(DistillRunConfig, root.parent / f) for f in bench.README_CONFIGS.values())
    assert bench.check_shared_setup([small, *others]) is small  # the README table's files agree
    other = load_config(DistillRunConfig, root / "distill" / "clive_lite0.yaml", ["labelled.crop=224"])
    with pytest.raises(SystemExit, match="differ in 'labelled'"):
        bench.check_shared_setup([small, other])


def test_collect_runs_reads_validation_record(tmp_path, monkeypatch):
    bench = _bench("collect_runs")
    run = tmp_path / "r"
    (run / "last").mkdir(parents=True)
    (run / "distill_config.json").write_text(json.dumps({"student": "s", "method": "none", "seed": 3}))
    (run / "summary.json").write_text(
        json.dumps({"total_steps": 12, "wall_seconds": 5.0, "best": {"srcc": 0.7, "stage": 0, "epoch": 1}})
    )
    history = [{"stage": 0, "epoch": 0, "val_srcc": 0.5}, {"stage": 0, "epoch": 1, "val_srcc": 0.7}]
    history.append({"stage": 1, "epoch": 0, "val_srcc": 0.6})
    (run / "last" / "train_state.json").write_text(json.dumps({"history": history}))
    row = bench.collect(run)
    assert row["val_srcc_end_of_stage"] == [0.7, 0.6]
    assert (row["method"], row["seed"], row["steps"], row["best_val_srcc"]) == ("none", 3, 12, 0.7)
    assert "| 0.700 (0, 1) | 0.700 / 0.600 |" in bench.markdown([row])
    argv = ["collect_runs", str(run), str(tmp_path / "unfinished"), "--out", str(tmp_path / "o.json")]
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit, match="unfinished runs"):
        bench.main()


def test_teacher_ema_rule():
    bench = _bench("teacher_ema_val")

    def rec(epoch, ema, raw):
        return {"epoch": epoch, "val_srcc": ema, "val_plcc": ema, "raw_val_srcc": raw, "raw_val_plcc": raw}

    behind = [rec(0, 0.70, 0.60), rec(1, 0.80, 0.70), rec(2, 0.80, 0.81)]
    verdict = bench.decide(behind)
    assert not verdict["adopt_ema"]  # behind the raw weights at the last epoch, however good before
    assert verdict["mean_last_3"]["ema"] == pytest.approx(0.7667, abs=1e-4)
    ahead = [rec(0, 0.70, 0.80), rec(1, 0.70, 0.80), rec(2, 0.82, 0.81)]
    assert not bench.decide(ahead)["adopt_ema"]  # ahead at the end, behind on the three-epoch mean
    assert bench.decide([rec(0, 0.8, 0.7), rec(1, 0.82, 0.81)])["adopt_ema"]
    with pytest.raises(ValueError, match="no paired EMA/raw validation record"):
        bench.decide([{"epoch": 0, "val_srcc": 0.5, "val_plcc": 0.5}])
    assert "EMA adopted: **no**" in bench.markdown(behind, verdict)


def test_split_csv_leaves_out_the_validation_images(rated_folder):
    bench = _bench("split_csv")
    labels = f"csv:{rated_folder / 'labels.csv'}"
    train = bench.split_paths(labels, None, "train", 0.25, 0)
    val = bench.split_paths(labels, None, "val", 0.25, 0)
    everything = bench.split_paths(labels, None, "train", 0.0, 0)
    assert val and not set(train) & set(val)
    assert sorted(train + val) == sorted(everything)
    with pytest.raises(ValueError, match=r"has no split \['nope'\]"):
        bench.split_paths(labels, None, "nope", 0.25, 0)


def test_distill_ablation_records_its_selection():
    from types import SimpleNamespace

    bench = _bench("distill_clive")
    args = SimpleNamespace(
        config=["x=c.yaml"], students=["iqa_effnet_lite0"], methods=list(bench.METHODS), seeds=[0, 1, 2]
    )
    args.runs, args.quick, args.include, args.collect_only = "runs/v", False, [], False
    assert bench.command_line(args, Path("o.json")) == (
        "python benchmarks/distill_clive.py --config x=c.yaml --students iqa_effnet_lite0 --runs runs/v --out o.json"
    )
    args.students, args.seeds = list(bench.STUDENTS), [1]
    assert "--students" not in bench.command_line(args, Path("o.json"))
    assert " --seeds 1 " in bench.command_line(args, Path("o.json"))
    args.include, args.collect_only = ["a.json", "b.json"], True
    assert bench.command_line(args, Path("o.json")).endswith(
        " --include a.json b.json --runs runs/v --out o.json --collect-only"
    )


def test_distill_ablation_includes_runs_of_other_grids(tmp_path):
    from types import SimpleNamespace

    bench = _bench("distill_clive")
    teacher = {"model": "t", "fingerprint": "aaaa"}
    rows = [
        {"student": s, "method": m, "seed": seed, "srcc": 0.1 * seed}
        for s in ("a", "b")
        for m in ("none", "hints")
        for seed in (0, 1)
    ]
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"teacher": teacher, "runs": rows}))
    args = SimpleNamespace(students=["a"], methods=["hints"], seeds=[0, 1, 2])
    runs = {("a", "hints", 0): {**rows[2]}}  # already in the table, the same result
    bench.include_runs(runs, str(other), json.loads(other.read_text()), teacher, args)
    assert sorted(runs) == [("a", "hints", 0), ("a", "hints", 1)]  # only the selection
    assert runs[("a", "hints", 1)]["included_from"] == str(other)
    runs[("a", "hints", 1)]["srcc"] = 0.5
    with pytest.raises(SystemExit, match=r"\('a', 'hints', 1\) is also in the table, with another result"):
        bench.include_runs(runs, str(other), json.loads(other.read_text()), teacher, args)
    with pytest.raises(SystemExit, match="distilled from another teacher"):
        bench.include_runs({}, str(other), json.loads(other.read_text()), {**teacher, "fingerprint": "bbbb"}, args)
    args.students = ["a", "c"]
    assert bench.missing_runs(args, list(runs.values())) == [
        "a/hints/seed2",
        "c/hints/seed0",
        "c/hints/seed1",
        "c/hints/seed2",
    ]


def test_bundle_choice_compares_methods_on_the_seeds_they_share():
    bench = _bench("bundle_student")
    val = {("none", 0): 0.80, ("none", 1): 0.70, ("none", 2): 0.72, ("hints", 0): 0.82, ("hints", 1): 0.70}
    val |= {("hints", 2): 0.85, ("review", 0): 0.81}
    runs = [{"student": "s", "method": m, "seed": k, "val_srcc": v} for (m, k), v in val.items()]
    summary = [{"student": "s", "method": m, "seeds": 1} for m in ("none", "hints", "review")]
    result = {"runs": runs, "summary": summary}
    # over all their seeds review's one run (0.81) would beat hints' mean (0.79); on seed 0, which every
    # method has run, hints wins (0.82); then hints' best seed is taken (2)
    chosen, run, compared = bench.choose(result, "s")
    assert (chosen["method"], run["seed"], compared) == ("hints", 2, [0])
    result["runs"] = [r for r in runs if r["method"] != "hints"]
    chosen, run, compared = bench.choose(result, "s")
    assert (chosen["method"], run["seed"], compared) == ("review", 0, [0])
    result["runs"] = [r for r in runs if r["method"] != "review"]
    chosen, run, compared = bench.choose(result, "s")
    assert (chosen["method"], run["seed"], compared) == ("hints", 2, [0, 1, 2])  # means 0.79 vs 0.74
    with pytest.raises(SystemExit, match="no runs of t"):
        bench.choose(result, "t")
    result["runs"] = [r for r in runs if (r["method"], r["seed"]) in {("none", 1), ("hints", 0)}]
    with pytest.raises(SystemExit, match="no seed has been run with every method"):
        bench.choose(result, "s")


def test_bundle_figures_match_rows_on_the_exact_bundle_never_on_an_alias():
    bench = _bench("bundle_figures")
    row = {"size": 500, "macs": 10, "images_per_s_b1": 100.0}
    speed = {
        "options": {"threads": 2},
        "rows": [
            {**row, "weights": "default", "backend": "torch", "images_per_s_b1": 5.0},  # whatever default was then
            {**row, "weights": "iqa_a.x", "backend": "torch"},
            {**row, "weights": "iqa_a.x", "backend": "onnx_fp32", "images_per_s_b1": 250.04},
            {**row, "weights": "iqa_a.x", "backend": "onnx_int8", "images_per_s_b1": 900.0},
            {**row, "weights": "iqa_a.x", "backend": "torch", "size": 224, "images_per_s_b1": 1.0},
        ],
    }
    entry = bench.figures(speed, "iqa_a.x", 500)
    assert entry == {
        "size": 500,
        "batch": 1,
        "threads": 2,
        "macs": 10,
        "torch_images_per_s": 100.0,
        "onnx_fp32_images_per_s": 250.0,
    }
    assert bench.figures(speed, "iqa_effnet_lite0.clive_half_rank", 500) is None  # the alias row is not used
    assert bench.figures(speed, "iqa_a.x", 384) is None


def test_bundle_card_describes_the_initialisation(tmp_path):
    bench = _bench("bundle_student")
    assert bench.describe_init({"student_pretrained": "none"}) == "random (no pre-training)."
    assert bench.describe_init({"student_pretrained": "imagenet"}) == "ImageNet weights."
    pretext = {
        "sources": [{"path": "pool/pristine"}, {"path": "runs/train_noval.csv"}],
        "epochs": 3,
        "samples_per_epoch": 4096,
        "crop": 224,
    }
    (tmp_path / "config.json").write_text(json.dumps({"kdiqa_model": {}, "pretext": pretext}))
    line = bench.describe_init({"student_init": str(tmp_path), "student_pretrained": "none"})
    assert f"pretext checkpoint `{tmp_path}`" in line
    assert "3 epochs × 4096 crops of 224 px from `pool/pristine`, `runs/train_noval.csv`" in line
    assert "no human score" in line
    (tmp_path / "config.json").write_text(json.dumps({"kdiqa_model": {}}))
    assert bench.describe_init({"student_init": str(tmp_path)}) == f"the checkpoint `{tmp_path}`."
    assert bench.describe_init({"student_init": str(tmp_path)}, "c.yaml").endswith(
        "`c.yaml` names it; configs/README.md gives the commands that make it."
    )
    assert bench.describe_init({"student_pretrained": "none"}, "c.yaml") == "random (no pre-training)."


def test_int8_settings_table_resumes_and_refuses_test(tmp_path, rated_folder, monkeypatch, capsys):
    import sys

    import kdiqa
    from kdiqa.checkpoint import save_model
    from kdiqa.export import export_model

    bench = _bench("int8_settings")
    tiny = kdiqa.create_model("iqa_test_tiny", eval_crop=48).eval()
    tiny.head.fc2.weight.data.mul_(50)  # spread the random model's scores so that rank agreement is defined
    save_model(tiny, tmp_path / "tiny")
    out = tmp_path / "int8.json"
    argv = ["int8_settings.py", "--model", str(tmp_path / "tiny"), "--calibration", str(rated_folder)]
    argv += ["--calib-images", "4", "--float-strides", "0", "4", "--methods", "minmax", "--threads", "1"]
    argv += ["--dataset", f"csv:{rated_folder / 'labels.csv'}", "--root", str(rated_folder), "--limit", "8"]
    argv += ["--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    result = json.loads(out.read_text())
    assert [r["setting"] for r in result["rows"]] == ["minmax-4-s0", "minmax-4-s4"]
    assert result["split"] == "train" and result["n"] == 8
    for r in result["rows"]:
        assert r["size_ratio"] > 1 and 0 <= r["mean_abs_diff"] <= r["max_abs_diff"]
        assert -1 <= r["srcc_vs_torch"] <= 1
    assert out.with_suffix(".md").read_text().count("| minmax-4-") == 2
    # a rerun with one more setting reuses the two done ones (their quantisation time is kept as it was)
    monkeypatch.setattr(sys, "argv", [*argv, "--methods", "minmax", "percentile"])
    bench.main()
    again = json.loads(out.read_text())
    assert again["rows"][:2] == result["rows"] and len(again["rows"]) == 4
    # other weights at the same path (as when an alias moves to a new bundle): every setting is exported again
    exports = []
    monkeypatch.setattr(bench, "export_model", lambda *a, **k: exports.append(1) or export_model(*a, **k))
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    assert exports == []  # same weights: both rows reused
    tiny.head.fc2.bias.data.add_(1.0)
    save_model(tiny, tmp_path / "tiny")
    bench.main()
    assert len(exports) == 2
    assert json.loads(out.read_text())["weights_sha256"] != again["weights_sha256"]
    monkeypatch.setattr(sys, "argv", [*argv, "--split", "test"])
    with pytest.raises(SystemExit, match="--split test"):
        bench.main()


def test_student_teacher_gap_reproduces_the_recorded_validation(
    tmp_path, rated_folder, tiny_teacher_and_photos, capsys
):
    """The gap benchmark re-derives each run's validation split and views: its val SRCC is the run's recorded best."""
    from kdiqa.distill.cache import cache_meta

    gap = _bench("student_teacher_gap")
    teacher, photos = tiny_teacher_and_photos
    for method in ("none", "response"):
        cfg = tmp_path / f"{method}.yaml"
        cfg.write_text(f"""
method: {method}
student: iqa_test_tiny
teacher: {teacher}
pool: {{sources: [{{path: {photos}}}], per_image: 1}}
labelled: {{dataset: "csv:{rated_folder / "labels.csv"}", crop: 48, batch_size: 4, workers: 0, val_fraction: 0.25}}
cache: {{enabled: true, dir: {tmp_path / "cache"}, pool_crop: 40, pool_views: 2, labelled_crop: 48,
         labelled_views: 1, stages: [2, 3], workers: 0}}
stages:
  - {{stage: soft, data: pool, epochs: 2, steps_per_epoch: 2}}
  - {{stage: task, data: labelled, epochs: 1, steps_per_epoch: 1}}
eval: {{mode: center, crop: 48}}
out_dir: {tmp_path / "runs" / "iqa_test_tiny" / method / "seed0"}
threads: 1
""")
        assert main(["distill", "--config", str(cfg), "--quiet"]) == 0
    out = tmp_path / "gap.json"
    assert gap.main(["--runs", str(tmp_path / "runs"), "--out", str(out), "--max-crops", "10", "--threads", "1"]) == 0
    result = json.loads(out.read_text())
    rows = {r["method"]: r for r in result["runs"]}
    assert set(rows) == {"none", "response"}
    for r in rows.values():
        assert r["val_srcc"] == pytest.approx(r["val_srcc_recorded"], abs=1e-9)
        assert r["n_val"] == 4 and r["pool_crops"] == 10  # of the cache's 16 crops, --max-crops 10
        assert -1 <= r["srcc_teacher_pool"] <= 1 and -1 <= r["srcc_teacher_val"] <= 1
    assert rows["none"]["pool_cache"] == rows["response"]["pool_cache"]  # the control is measured on the same crops
    # 4 photos × (1 distorted + 1 clean) items × 2 crops
    assert cache_meta(tmp_path / "cache" / rows["none"]["pool_cache"])["items"] == 16
    assert [s["method"] for s in result["summary"]] == ["none", "response"]
    assert "| iqa_test_tiny | response | 1 |" in out.with_suffix(".md").read_text()
    # A re-run skips the runs already measured and keeps their figures; another crop budget is refused.
    assert gap.main(["--runs", str(tmp_path / "runs"), "--out", str(out), "--max-crops", "10", "--threads", "1"]) == 0
    assert capsys.readouterr().out.count("measured before") == 2
    again = json.loads(out.read_text())
    assert again["runs"] == result["runs"] and len(again["commands"]) == 2
    with pytest.raises(SystemExit, match="measured with --max-crops 10"):
        gap.main(["--runs", str(tmp_path / "runs"), "--out", str(out), "--max-crops", "20"])
    with pytest.raises(SystemExit, match="no finished runs"):
        gap.main(["--runs", str(tmp_path / "nothing"), "--out", str(out)])
    no_pool = tmp_path / "no_pool" / "iqa_test_tiny" / "response" / "seed0"
    shutil.copytree(tmp_path / "runs" / "iqa_test_tiny" / "response" / "seed0", no_pool)
    cfg = json.loads((no_pool / "distill_config.json").read_text())
    cfg["pool"]["sources"] = []
    (no_pool / "distill_config.json").write_text(json.dumps(cfg))
    with pytest.raises(SystemExit, match="has no pool"):
        gap.main(["--runs", str(tmp_path / "no_pool"), "--out", str(tmp_path / "gap2.json"), "--max-crops", "10"])


def test_teacher_selection_by_srcc_or_mean(monkeypatch):
    bench = _bench("teacher_clive")
    val = {
        "runs/a/best|center": {"srcc": 0.850, "plcc": 0.864},
        "runs/a/best|crops": {"srcc": 0.847, "plcc": 0.868},
        "runs/b|x/best|full": {"srcc": 0.840, "plcc": 0.860},
    }
    assert bench.choose(val, "srcc") == ("runs/a/best", "center")
    assert bench.choose(val, "mean") == ("runs/a/best", "crops")  # 0.8575 against 0.857
    assert bench.choose({"runs/b|x/best|full": val["runs/b|x/best|full"]}, "mean") == ("runs/b|x/best", "full")
    assert bench.val_score(val["runs/a/best|crops"], "mean") == pytest.approx(0.8575)
    table = bench.val_table({k: {**r, "n": 105} for k, r in val.items()}, "srcc").splitlines()
    assert table[2] == "| runs/a/best | center | 0.8500 | 0.8640 | 0.8570 | 105 |"  # best SRCC first
    assert table[-1].startswith("| runs/b|x/best | full | 0.8400 |")
    with pytest.raises(SystemExit, match="no validation results"):
        bench.choose({}, "srcc")
    monkeypatch.setattr("sys.argv", ["teacher_clive", "--run", "r", "--fixed", "--val-only"])
    with pytest.raises(SystemExit):  # argparse error: nothing to choose and nothing to test
        bench.main()
