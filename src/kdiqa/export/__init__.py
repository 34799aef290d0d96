"""Export to ONNX (fp32, int8) with parity checks; see :func:`kdiqa.export.bundle.export_model`.

Example:
    >>> import kdiqa
    >>> from kdiqa.export import ExportOptions, export_model
    >>> report = export_model(kdiqa.create_model("iqa_test_tiny"), "exported/")  # doctest: +SKIP
    >>> report["parity"]["ok"]  # doctest: +SKIP
    True
"""

from .bundle import ExportOptions, export_model, summary_lines

__all__ = ["ExportOptions", "export_model", "summary_lines"]
