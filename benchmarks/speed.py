"""Speed benchmark: teacher and students in torch eager and ONNX Runtime fp32/int8, and peers.

Same as ``kdiqa benchmark`` (all options pass through); writes ``benchmarks/results/speed.json`` and
``benchmarks/results/speed.md``. Run from the repository root on a quiet machine:

    python benchmarks/speed.py --threads 2            # full run
    python benchmarks/speed.py --quick --peers none   # smoke test (writes speed_quick.*)
"""

import sys

from kdiqa.cli import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", *sys.argv[1:]]))
