# The torch-free kdiqa service: the bundled default model on ONNX Runtime, the HTTP API and the web page.
#   docker build -t kdiqa-serve .
#   docker run --rm -p 8000:8000 kdiqa-serve                        # then open http://localhost:8000/
#   docker run --rm -p 8000:8000 kdiqa-serve --model edge --int8    # other flags of `kdiqa serve`
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLCONFIGDIR=/tmp/matplotlib
WORKDIR /opt/kdiqa
COPY pyproject.toml README.md ./
COPY src ./src
# runtime = numpy, Pillow, onnxruntime; serve = FastAPI, uvicorn, python-multipart, matplotlib (no torch)
RUN pip install ".[runtime,serve]" && rm -rf src

USER nobody
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
ENTRYPOINT ["kdiqa", "serve", "--backend", "onnx", "--host", "0.0.0.0", "--port", "8000"]
