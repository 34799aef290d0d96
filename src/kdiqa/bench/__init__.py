"""Speed benchmark of kdiqa models and peers (``kdiqa benchmark``, ``benchmarks/speed.py``)."""
