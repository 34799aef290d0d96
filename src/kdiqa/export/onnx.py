"""ONNX export of IQA models: fp32 with dynamic batch and spatial size, and int8 by static quantisation.

The exported folder is everything a runtime needs:

- ``model.onnx``: input ``image`` (float32 NCHW, RGB in [0, 1]; batch, height and width dynamic),
  output ``score`` (normalised, higher = better). The mean/std normalisation is part of the graph.
- ``model.int8.onnx`` (with ``int8``): see :mod:`kdiqa.export.quantize`.
- ``preprocess.json``: the test-time views and the output scale (see :mod:`kdiqa.runtime`).
- ``export.json``: opset, exporter, library versions, file sizes and the parity report.
"""

from __future__ import annotations

import dataclasses
import hashlib
import platform
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..models.iqa import IQAModel
from ..runtime.preprocess import PreprocessConfig

FP32_NAME, INT8_NAME, REPORT_NAME = "model.onnx", "model.int8.onnx", "export.json"
INPUT_NAME, OUTPUT_NAME = "image", "score"
DEFAULT_OPSET = 17
EXPORTERS = ("legacy", "dynamo")


def _onnx():
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise ImportError("ONNX export needs onnx and onnxruntime (pip install kdiqa[onnx])") from exc
    return onnx, onnxruntime


def preprocess_config(model: IQAModel, files: dict[str, str] | None = None) -> PreprocessConfig:
    """The runtime's view of ``model``: its default test-time views and output scale."""
    return dataclasses.replace(
        PreprocessConfig.for_model(model.cfg),
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        files=files or {"fp32": FP32_NAME},
    )


def export_fp32(
    model: IQAModel, path: str | Path, opset: int = DEFAULT_OPSET, exporter: str = "legacy", size: int = 224
) -> Path:
    """Writes ``model`` as ONNX with dynamic batch, height and width.

    Args:
        model: the IQA model (exported in eval mode, on the CPU, in float32).
        path: the ``.onnx`` file to write.
        opset: ONNX opset (recorded in the file and in ``export.json``).
        exporter: ``"legacy"`` (TorchScript tracing; seconds even for the teacher) or ``"dynamo"``
            (``torch.export``; minutes on a small CPU for the EfficientNets).
        size: side of the dummy input used for tracing.
    """
    onnx, _ = _onnx()
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    path = Path(path)
    model = model.cpu().float().eval().to(memory_format=torch.contiguous_format)
    x = torch.rand(1, 3, size, size)
    with torch.no_grad(), warnings.catch_warnings():
        # The legacy exporter warns that it is deprecated; the choice is the caller's and is recorded.
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message="The feature will be removed.*")
        if exporter == "legacy":
            torch.onnx.export(
                model,
                (x,),
                str(path),
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch", 2: "height", 3: "width"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=opset,
            )
        else:
            dims = {
                0: torch.export.Dim("batch", max=4096),
                2: torch.export.Dim("height", min=32, max=8192),
                3: torch.export.Dim("width", min=32, max=8192),
            }
            program = torch.onnx.export(
                model,
                (x,),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes={"x": dims},
                opset_version=opset,
                verbose=False,
            )
            program.save(str(path))
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, {"kdiqa_model": model.cfg.name, "kdiqa_exporter": exporter})
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def model_opset(path: str | Path) -> int:
    onnx, _ = _onnx()
    proto = onnx.load(str(path), load_external_data=False)
    return int(next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")))


# --- calibration images -------------------------------------------------------------------------


# --- file facts ---------------------------------------------------------------------------------


def file_info(path: str | Path) -> dict:
    path = Path(path)
    return {
        "file": path.name,
        "bytes": path.stat().st_size,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }


def versions() -> dict:
    import onnx
    import onnxruntime

    from .. import __version__

    return {
        "kdiqa": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "Pillow": Image.__version__,
        "python": platform.python_version(),
    }
