"""ONNX export of the tiny model: fp32 parity at two sizes and batch 2, int8, the export/score CLI.

These tests never skip: a broken export (a size baked into the graph, a missing dependency) fails.
"""

import csv
import json

import numpy as np
import pytest
import torch
from conftest import synthetic_photo
from scipy.stats import spearmanr

import kdiqa
from kdiqa.cli import main
from kdiqa.data.io import load_image
from kdiqa.data.transforms import EvalTransform
from kdiqa.export import ExportOptions, export_model
from kdiqa.export.onnx import preprocess_config
from kdiqa.export.quantize import CALIBRATION_METHOD, calibration_images, front_end_nodes, quantize_int8
from kdiqa.runtime import OnnxScorer, make_views, predict_paths


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = kdiqa.create_model("iqa_test_tiny").eval()
    with torch.no_grad():  # spread the random model's scores so int8 ranking is measurable
        model.head.fc2.weight.mul_(50)
    return model


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for i in range(10):
        synthetic_photo((80 + 4 * i, 64), seed=i, quality=0.2 + 0.08 * i).save(folder / f"img_{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def exported(tiny, images, tmp_path_factory):
    out = tmp_path_factory.mktemp("exported")
    report = export_model(tiny, out, ExportOptions(int8=True, calibration=str(images), threads=1), source="tiny")
    return out, report


def test_fp32_parity_at_two_sizes_and_batch_two(tiny, exported):
    out, report = exported
    scorer = OnnxScorer(out, "fp32", threads=1)
    rng = np.random.default_rng(0)
    for h, w in ((64, 64), (96, 136)):
        x = rng.random((2, 3, h, w), dtype=np.float32)
        with torch.no_grad():
            ref = tiny(torch.from_numpy(x)).numpy()
        got = scorer.predict(x)
        assert got.shape == (2,)
        assert np.abs(got - ref).max() < 1e-4, (h, w)
    assert report["parity"]["ok"] and report["parity"]["fp32"]["max"] < 1e-4
    assert report["parity"]["sizes"] == ["224x224", "375x500"] and report["parity"]["batch"] == 2


def test_input_normalisation_is_one_conv_in_the_graph(exported):
    import onnx

    out, _ = exported
    graph = onnx.load(str(out / "model.onnx")).graph
    first = [n.op_type for n in graph.node if "image" in n.input]
    assert first == ["Conv"]  # not Sub + Div: two extra passes over the full-size input in ONNX Runtime


def test_export_folder_is_self_describing(exported):
    out, _ = exported
    saved = json.loads((out / "export.json").read_text())
    assert saved["opset"] == 17 and saved["exporter"] == "legacy" and saved["model"] == "iqa_test_tiny"
    assert {"torch", "onnx", "onnxruntime"} <= set(saved["versions"])
    pre = json.loads((out / "preprocess.json").read_text())
    assert pre["format"] == "kdiqa-onnx" and pre["files"] == {"fp32": "model.onnx", "int8": "model.int8.onnx"}
    assert pre["mode"] == "full" and pre["score_range"] == [0.0, 100.0] and pre["higher_better"] is True


def test_int8_is_smaller_and_ranks_like_fp32(exported, images):
    out, report = exported
    assert (out / "model.int8.onnx").stat().st_size < (out / "model.onnx").stat().st_size * 0.7
    assert report["int8"]["format"] == "QDQ" and report["int8"]["per_channel"] is True
    assert report["int8"]["calibration_images"] == 10 and report["int8"]["pre_processing_shapes"] == "symbolic"
    paths = sorted(str(p) for p in images.iterdir())
    z32 = predict_paths(OnnxScorer(out, "fp32", threads=1), paths)
    z8 = predict_paths(OnnxScorer(out, "int8", threads=1), paths)
    assert np.abs(z32 - z8).max() < 0.05
    assert spearmanr(z32, z8)[0] > 0.7


@pytest.mark.parametrize("pad_type", ["", "same"])  # "same": TF-style pads computed at run time
def test_front_end_nodes_follow_the_measured_strides(pad_type, tmp_path):
    import onnx

    from kdiqa.export.onnx import export_fp32

    model = kdiqa.create_model("iqa_test_tiny", backbone_kwargs={"pad_type": pad_type}).eval()
    proto = onnx.load(str(export_fp32(model, tmp_path / "m.onnx")))
    counts = [len(front_end_nodes(proto, s)) for s in (2, 4, 8, 16)]
    assert counts[0] > 0 and counts == sorted(set(counts)) and counts[-1] < len(proto.graph.node)
    deepest = max(f["reduction"] for f in model.feature_info)
    with pytest.raises(ValueError, match="nothing to quantise"):
        front_end_nodes(proto, deepest)


def test_int8_keeps_the_front_end_float(tiny, exported, images, tmp_path):
    import onnx

    out, report = exported
    front = report["int8"]["float_front_end"]
    assert front["max_stride"] == 8 and front["nodes"] > 0
    # quantising everything: a smaller file, more dequantised tensors than the default
    loaders, _ = calibration_images(images, n=4)
    cfg = preprocess_config(tiny)
    settings = quantize_int8(out / "model.onnx", tmp_path / "all.onnx", loaders, cfg, float_stride=0)
    assert settings["float_front_end"]["nodes"] == 0
    assert (tmp_path / "all.onnx").stat().st_size < (out / "model.onnx").stat().st_size / 2
    n_dq = [
        sum(n.op_type == "DequantizeLinear" for n in onnx.load(str(p)).graph.node)
        for p in (out / "model.int8.onnx", tmp_path / "all.onnx")
    ]
    assert 0 < n_dq[0] < n_dq[1]


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_chunked_calibration(tiny, exported, images, tmp_path, method, monkeypatch):
    import onnx
    from onnx import numpy_helper

    from kdiqa.export import quantize
    from kdiqa.export.quantize import calibration_chunk

    ranges = []
    set_range = quantize.ViewsCalibrationReader.set_range

    def spy(self, start_index, end_index):
        ranges.append((start_index, end_index))
        set_range(self, start_index, end_index)

    monkeypatch.setattr(quantize.ViewsCalibrationReader, "set_range", spy)

    assert [calibration_chunk(n, 8) for n in (64, 30, 7, 1)] == [8, 6, 7, 1]
    out, _ = exported
    loaders, _ = calibration_images(images, n=6)
    cfg = preprocess_config(tiny)

    def scales(path):  # the activations' quantisation scales, in graph order
        graph = onnx.load(str(path)).graph
        init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        return [init[n.input[1]] for n in graph.node if n.op_type == "QuantizeLinear" and n.input[1] in init]

    chunked = quantize_int8(out / "model.onnx", tmp_path / "c.onnx", loaders, cfg, method, chunk=2)
    whole = quantize_int8(out / "model.onnx", tmp_path / "w.onnx", loaders, cfg, method, chunk=6)
    assert chunked["calibration_chunk"] == 2 and whole["calibration_chunk"] == 6
    assert ranges[:4] == [(0, 6), (0, 2), (2, 4), (4, 6)]  # ONNX Runtime walks the chunks (after __init__'s range)
    a, b = scales(tmp_path / "c.onnx"), scales(tmp_path / "w.onnx")
    assert len(a) == len(b) > 0
    if method == "minmax":  # ranges merge exactly
        assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    else:  # histograms keep the first chunk's bins: close, not equal
        assert all(np.allclose(u, v, rtol=0.25) for u, v in zip(a, b, strict=True))
    x = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
    scorer = OnnxScorer(out, "fp32", threads=1)
    ref = scorer.predict(x)
    import onnxruntime as ort

    got = ort.InferenceSession(str(tmp_path / "c.onnx")).run(None, {"image": x})[0]
    assert np.abs(got - ref).max() < 0.1


def test_runtime_scores_match_torch_scores(tiny, exported, images):
    out, _ = exported
    scorer = OnnxScorer(out, threads=1)
    for path in sorted(images.iterdir())[:3]:
        assert scorer.score(path) == pytest.approx(tiny.score(path), abs=1e-3)
    crops = OnnxScorer(out, threads=1, mode="crops", crop=48, n_crops=3)
    path = sorted(images.iterdir())[0]
    assert make_views(path, crops.cfg).shape == (6, 3, 48, 48)
    with torch.no_grad():
        ref = tiny.to_output_scale(tiny(EvalTransform("crops", 48, 3)(load_image(path))).mean()).item()
    assert crops.score(path) == pytest.approx(ref, abs=1e-3)


def test_labelled_parity_on_a_csv_dataset(tiny, rated_folder, tmp_path):
    opts = ExportOptions(threads=1, parity_dataset=f"csv:{rated_folder / 'labels.csv'}", parity_split="test")
    report = export_model(tiny, tmp_path / "ex", opts)
    lab = report["parity_labelled"]
    assert lab["n"] == 6 and set(lab) >= {"torch", "fp32"}
    assert lab["fp32"]["max_abs_diff_vs_torch"] < 1e-4
    assert 0 <= lab["fp32"]["mean_abs_diff_vs_torch"] <= lab["fp32"]["max_abs_diff_vs_torch"]
    assert lab["fp32"]["srcc"] == pytest.approx(lab["torch"]["srcc"])


def test_bad_inputs_name_the_file(tmp_path, exported):
    with pytest.raises(FileNotFoundError, match=r"preprocess\.json"):
        OnnxScorer(tmp_path)
    out, _ = exported
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "preprocess.json").write_text((out / "preprocess.json").read_text())
    (broken / "model.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(ValueError, match=r"model\.onnx"):
        OnnxScorer(broken)
    with pytest.raises(ValueError, match="int8"):
        OnnxScorer(out, "int4")
    with pytest.raises(ValueError, match="calibration"):
        export_model(kdiqa.create_model("iqa_test_tiny"), tmp_path / "x", ExportOptions(int8=True))


def test_cli_export_and_score_with_onnx_backend(tiny, images, tmp_path, capsys):
    ckpt = kdiqa.save_model(tiny, tmp_path / "ckpt")
    out = tmp_path / "onnx"
    assert main(["export", "--model", str(ckpt), "--out", str(out), "--threads", "1"]) == 0
    assert (out / "model.onnx").is_file() and not (out / "model.int8.onnx").exists()
    (images.parent / "bad").mkdir(exist_ok=True)
    broken = images.parent / "bad" / "broken.jpg"
    broken.write_text("not an image")
    res = tmp_path / "scores.csv"
    args = ["score", str(images), str(broken), "--model", str(out), "--backend", "onnx", "--output", str(res)]
    assert main([*args, "--quiet", "--threads", "1"]) == 1  # one file failed; the rest are scored
    rows = {r["path"]: r for r in csv.DictReader(res.read_text().splitlines())}
    assert len(rows) == 11 and rows[str(broken)]["error"] and not rows[str(broken)]["score"]
    first = str(sorted(images.iterdir())[0])
    assert float(rows[first]["score"]) == pytest.approx(tiny.score(first), abs=1e-3)
    assert "broken.jpg" in capsys.readouterr().err
    assert main(["score", str(images), "--model", str(out), "--int8", "--quiet"]) == 2  # --int8 needs onnx
    assert main(["score", str(images), "--backend", "onnx", "--model", "teacher", "--quiet"]) == 2
    assert "no bundled ONNX export of iqa_effnet_lite2.clive" in capsys.readouterr().err


def test_cli_float_stride_reaches_the_quantiser(tiny, images, tmp_path):
    ckpt = kdiqa.save_model(tiny, tmp_path / "ckpt")
    for stride, quantised_all in (("0", True), ("4", False)):
        out = tmp_path / f"onnx{stride}"
        args = ["export", "--model", str(ckpt), "--out", str(out), "--int8", "--calibration", str(images)]
        assert main([*args, "--calib-images", "2", "--float-stride", stride, "--threads", "1"]) == 0
        front = json.loads((out / "export.json").read_text())["int8"]["float_front_end"]
        assert front["max_stride"] == int(stride) and (front["nodes"] == 0) == quantised_all
        # the command line's default calibration is the library's (spelled out there to stay torch-free)
        assert json.loads((out / "export.json").read_text())["int8"]["calibration_method"] == CALIBRATION_METHOD


def test_multi_level_head_exports_with_parity(tmp_path):
    torch.manual_seed(1)
    model = kdiqa.create_model("iqa_test_tiny", head_levels=(1, 3)).eval()
    report = export_model(model, tmp_path / "ml", ExportOptions(threads=1), source="tiny-ml")
    assert report["parity"]["ok"] and report["parity"]["fp32"]["max"] < 1e-4
    x = np.random.default_rng(1).random((2, 3, 72, 88), dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.abs(OnnxScorer(tmp_path / "ml", "fp32", threads=1).predict(x) - ref).max() < 1e-4


def test_input_pool_exports_with_parity_at_odd_sizes(tmp_path):
    torch.manual_seed(2)
    model = kdiqa.create_model("iqa_test_tiny", input_pool=2).eval()
    report = export_model(model, tmp_path / "half", ExportOptions(threads=1), source="tiny-half")
    assert report["parity"]["ok"]
    x = np.random.default_rng(2).random((2, 3, 73, 91), dtype=np.float32)  # odd sides: the last row/column drop
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.abs(OnnxScorer(tmp_path / "half", "fp32", threads=1).predict(x) - ref).max() < 1e-4


def test_pre_processing_falls_back_when_symbolic_shapes_fail(tmp_path, monkeypatch):
    from pathlib import Path

    from kdiqa.export.quantize import _pre_process

    work, scratch = tmp_path / "work", tmp_path / "scratch"
    work.mkdir()
    scratch.mkdir()
    monkeypatch.chdir(work)
    calls = []

    def fake(src, dst, skip_symbolic_shape):
        calls.append((skip_symbolic_shape, Path(src).is_absolute()))
        if not skip_symbolic_shape:
            Path("sym_shape_infer_temp.onnx").write_bytes(b"debug copy")  # what ONNX Runtime leaves behind
            raise Exception("Incomplete symbolic shape inference")

    got = _pre_process(fake, Path("a.onnx"), Path("b.onnx"), scratch)
    assert got.startswith("onnx only (symbolic shape inference failed")
    assert calls == [(False, True), (True, True)]  # relative paths resolved before the directory change
    assert not list(work.iterdir()) and (scratch / "sym_shape_infer_temp.onnx").is_file()

    def broken(src, dst, skip_symbolic_shape):
        raise Exception("some other failure")

    with pytest.raises(Exception, match="some other failure"):
        _pre_process(broken, tmp_path / "a", tmp_path / "b", scratch)
