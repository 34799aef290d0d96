"""Static int8 quantisation of an exported model (ONNX Runtime's quantiser, QDQ format).

Weights are int8 per output channel, activations uint8 per tensor, with ranges calibrated on
unlabelled images seen through the model's own test-time views. The high-resolution front end of
the network (every layer before the first one at output stride > ``float_stride``, 8 by default)
stays in float: ONNX Runtime's per-tensor error analysis
(``onnxruntime.quantization.qdq_loss_debug``) on the default CLIVE student showed the error
compounding from those first layers (signal-to-quantisation-noise 31 dB after the stem, 10 dB by
stride 8, 6 dB at the last stage). Keeping them in float cut the mean |int8 − fp32| score
difference on 300 CLIVE train images from 0.022 to 0.005 (the scores' spread is 0.13; 64 calibration
images from ``configs/pool/default.yaml``), while the file grew by 1 % (0.911 → 0.923 MB), since
those layers hold few weights. Stride 16 halves the error again, but the file grows by 22 %.

Activation ranges come from ONNX Runtime's ``percentile`` calibration (the 99.999th percentile of |x|) by
default. ``benchmarks/int8_settings.py`` compared the methods on 300 CLIVE train images: on a MobileNetV3
student, min-max let a few outlying activations stretch the ranges (mean |int8 − fp32| 0.019, rank
agreement 0.987), percentile did not (0.005, 0.999); on the teacher the two were level (0.014 / 0.013, 0.997 both).
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from pathlib import Path

import numpy as np

from ..data.io import is_image_file, load_image
from ..runtime.preprocess import PreprocessConfig, make_views
from .onnx import _onnx

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
CALIBRATION_METHOD = "percentile"  # the default (module docstring)
FLOAT_STRIDE = 8  # layers before the first one at a larger output stride stay float
CALIBRATION_CHUNK = 8  # calibration images whose activations are held in memory at once


def calibration_images(source: str | Path, n: int = 64, seed: int = 0) -> tuple[list, str]:
    """Up to ``n`` unlabelled images (a seeded sample) for int8 calibration.

    Args:
        source: a folder of images (recursive) or a pool YAML (``configs/pool/default.yaml``:
            folders/CSVs plus synthetic distortions; see :mod:`kdiqa.data.pools`).
        n: how many images.
        seed: sampling seed.

    Returns:
        Zero-argument callables that produce the images (decoded lazily), and a description.
    """
    src = Path(source)
    rng = np.random.default_rng(seed)
    if src.is_dir():
        files = sorted(str(f) for f in src.rglob("*") if f.is_file() and is_image_file(f))
        if not files:
            raise ValueError(f"calibration folder {src} holds no image files")
        picked = sorted(rng.choice(len(files), size=min(n, len(files)), replace=False))
        return [lambda p=files[i]: load_image(p) for i in picked], f"folder {src} ({len(picked)} of {len(files)})"
    if src.suffix.lower() in (".yaml", ".yml") and src.is_file():
        from ..config import load_config
        from ..data.pools import PoolConfig, build_items

        items = build_items(load_config(PoolConfig, src, []))
        if not items:
            raise ValueError(f"calibration pool {src} has no items")
        picked = sorted(rng.choice(len(items), size=min(n, len(items)), replace=False))
        return [items[i].render for i in picked], f"pool {src} ({len(picked)} of {len(items)} items)"
    raise FileNotFoundError(f"calibration source {src} is neither a folder of images nor a pool .yaml file")


class ViewsCalibrationReader:
    """Feeds calibration images to ONNX Runtime's quantiser, one image's test-time views per batch.

    Built lazily on ``onnxruntime.quantization.CalibrationDataReader`` (see :func:`quantize_int8`).
    """

    def __init__(self, images: list, cfg: PreprocessConfig) -> None:
        self.images, self.cfg = images, cfg
        self.set_range(0, len(images))

    def __len__(self) -> int:
        return len(self.images)

    def get_next(self) -> dict | None:
        load = next(self._it, None)
        if load is None:
            return None
        return {self.cfg.input_name: make_views(load(), self.cfg)}

    def set_range(self, start_index: int, end_index: int) -> None:
        """Serve only ``images[start_index:end_index]`` (ONNX Runtime's chunked calibration calls this)."""
        self._range = (start_index, end_index)
        self._it = iter(self.images[start_index:end_index])

    def rewind(self) -> None:
        self.set_range(*self._range)


def calibration_chunk(n: int, at_most: int) -> int:
    """The largest divisor of ``n`` that is ≤ ``at_most``: ONNX Runtime's chunked calibration needs equal chunks.

    Example:
        >>> calibration_chunk(64, 8), calibration_chunk(30, 8), calibration_chunk(7, 8)
        (8, 6, 7)
    """
    return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)


def compact_names(path: str | Path) -> None:
    """Shortens every tensor name (graph input/output names kept) and drops node names, doc strings and
    value_info in place. In a QDQ graph the names of the many quantisation tensors are a noticeable
    part of a small model's file; the computation is unchanged.
    """
    onnx, _ = _onnx()
    proto = onnx.load(str(path))
    g = proto.graph
    keep = {v.name for v in g.input} | {v.name for v in g.output}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return names.setdefault(name, format(len(names), "x"))

    for t in g.initializer:
        t.name, t.doc_string = short(t.name), ""
    for node in g.node:
        node.name, node.doc_string = "", ""
        node.input[:] = [short(i) for i in node.input]
        node.output[:] = [short(o) for o in node.output]
    del g.value_info[:]
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def front_end_nodes(proto, max_stride: int, probe: int = 224) -> list[str]:
    """Names of the nodes that run before the first layer whose output stride exceeds ``max_stride``.

    Strides are measured, not looked up: ONNX Runtime runs the graph once on a ``probe`` x ``probe``
    input with every node output exposed, and a 4-D output of height ``h`` has stride ``probe / h``.
    (Static shape inference is not enough: TF-style "same" padding, as in ``tf_efficientnet_lite*``,
    computes its pads at run time, which leaves every later shape unknown.) Nodes are in topological
    order (the ONNX rule), so the prefix is the network's front end, squeeze-excite branches (1 x 1
    maps) included. Unnamed nodes are named in place, since the quantiser excludes nodes by name.

    Raises:
        ValueError: if no node's output stride exceeds ``max_stride`` (nothing would be quantised).
    """
    onnx, ort = _onnx()
    for i, node in enumerate(proto.graph.node):
        node.name = node.name or f"kdiqa_node_{i}"
    probe_model = onnx.ModelProto()
    probe_model.CopyFrom(proto)
    graph = probe_model.graph
    known = {o.name for o in graph.output}
    outputs = [o for node in graph.node for o in node.output if o and o not in known]
    graph.output.extend(onnx.ValueInfoProto(name=o) for o in outputs)
    session = ort.InferenceSession(probe_model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.zeros((1, 3, probe, probe), dtype=np.float32)
    values = session.run(outputs, {session.get_inputs()[0].name: x})
    heights = {o: v.shape[2] for o, v in zip(outputs, values, strict=True) if np.ndim(v) == 4 and v.shape[2] > 1}
    names = []
    for node in proto.graph.node:
        if any(probe / heights[o] > max_stride for o in node.output if o in heights):
            return names
        names.append(node.name)
    raise ValueError(f"no layer of this model reaches an output stride above {max_stride}: nothing to quantise")


def quantize_int8(
    fp32_path: str | Path,
    int8_path: str | Path,
    images: list,
    cfg: PreprocessConfig,
    method: str = CALIBRATION_METHOD,
    per_channel: bool = True,
    quantize_bias: bool = False,
    reduce_range: bool = True,
    float_stride: int = FLOAT_STRIDE,
    chunk: int = CALIBRATION_CHUNK,
) -> dict:
    """Static int8 quantisation (QDQ) of an exported model, calibrated on ``images``.

    Weights are int8 (per output channel with ``per_channel``), activations uint8 per tensor with
    ranges from ``method`` (``minmax``, ``entropy`` or ``percentile``). The graph is first run through
    ONNX Runtime's quantisation pre-processing (shape inference and fusions). Biases stay float32
    unless ``quantize_bias`` (ONNX Runtime still fuses each Conv into one ``QLinearConv``; int32
    biases would add a per-channel scale and zero point each, ~3x their size). ``reduce_range``
    (the default) keeps weights within 7 bits: without VNNI, x86 CPUs multiply u8×s8 pairs into
    int16 sums that saturate with full-range weights (on a CLIVE student this halved the mean
    |int8 − fp32| and raised the rank agreement with fp32 from 0.96 to 0.99). Layers before the
    first one at output stride > ``float_stride`` stay in float (module docstring; 0: none do).

    Calibration runs over ``chunk`` images at a time (at most; ONNX Runtime's ``CalibStridedMinMax``, which
    needs equal chunks) and merges their ranges or histograms: ONNX Runtime otherwise keeps every
    intermediate tensor of every calibration image in memory before it reduces them, which for the
    histogram methods on the teacher (64 images, 384 px) takes more than 18 GB.
    Min-max ranges merge exactly; histograms keep the first chunk's bin width and grow bins as needed.

    Returns:
        The settings used, for ``export.json``.
    """
    onnx, _ = _onnx()
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}")
    if not images:
        raise ValueError("int8 calibration needs at least one image")
    calib = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy}
    calib["percentile"] = CalibrationMethod.Percentile

    class _Reader(ViewsCalibrationReader, CalibrationDataReader):
        pass

    cfg, views = _calibration_views(cfg, method)
    step = calibration_chunk(len(images), chunk)
    with tempfile.TemporaryDirectory(prefix="kdiqa-quant-") as tmp:
        prep = Path(tmp) / "prep.onnx"
        shapes = _pre_process(quant_pre_process, fp32_path, prep, scratch=Path(tmp))
        proto = onnx.load(str(prep))
        keep_float = front_end_nodes(proto, float_stride) if float_stride else []
        onnx.save(proto, str(prep))  # with any node names front_end_nodes gave
        quantize_static(
            str(prep),
            str(int8_path),
            _Reader(images, cfg),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=calib[method],
            reduce_range=reduce_range,
            nodes_to_exclude=keep_float,
            extra_options={"QuantizeBias": quantize_bias, "CalibStridedMinMax": step},
        )
    compact_names(int8_path)
    settings = {"format": "QDQ", "per_channel": per_channel, "reduce_range": reduce_range, "bias": quantize_bias}
    calibration = {"method": method, "images": len(images), "chunk": step, "views": views}
    return _settings(settings, calibration, {"max_stride": float_stride, "nodes": len(keep_float)}, shapes)


def _calibration_views(cfg: PreprocessConfig, method: str) -> tuple[PreprocessConfig, str]:
    """The views calibration runs on, and their description for ``export.json``."""
    if method == "minmax":
        return cfg, "the model's test-time views"
    # ONNX Runtime's histogram collectors stack all batches: shapes must be equal
    cfg = dataclasses.replace(cfg, mode="center", resize=cfg.crop, max_short=None)
    return cfg, f"one {cfg.crop} px centre crop after a shorter-side resize to {cfg.crop} px (equal shapes)"


def _settings(q: dict, calibration: dict, front_end: dict, shapes: str) -> dict:
    """The int8 settings recorded in ``export.json``."""
    return {
        "format": q["format"],
        "per_channel": q["per_channel"],
        "weights": "int8, 7-bit range (reduce_range)" if q["reduce_range"] else "int8",
        "activations": "uint8",
        "biases": "int32" if q["bias"] else "float32",
        "tensor_names": "shortened",
        "calibration_method": calibration["method"],
        "calibration_images": calibration["images"],
        "calibration_chunk": calibration["chunk"],
        "calibration_views": calibration["views"],
        "float_front_end": front_end,
        "pre_processing_shapes": shapes,
    }


def _pre_process(quant_pre_process, src: Path, dst: Path, scratch: Path) -> str:
    """ONNX Runtime's quantisation pre-processing; returns which shape inference it could use.

    Symbolic shape inference gives up on some graphs (an EfficientNet's run-time "same" padding feeding
    the multi-level head's pooling), raising a bare ``Exception``. The fusions and ONNX's own shape
    inference still apply, and nothing downstream needs the symbolic shapes (the front end's strides
    are measured by running the model), so it is retried without and the report says so. When it gives
    up, ONNX Runtime also writes a debug copy of the model (tens of MB) into the working directory:
    the call runs inside ``scratch`` so that copy goes away with it.
    """
    src, dst = Path(src).resolve(), Path(dst).resolve()
    try:
        with contextlib.chdir(scratch):
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
        return "symbolic"
    except Exception as err:  # ONNX Runtime raises a plain Exception for incomplete inference
        if "symbolic shape inference" not in str(err).lower():
            raise
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
        return f"onnx only (symbolic shape inference failed: {err})"
