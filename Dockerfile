# CPU image (default):      docker build -t iadbe .
# GPU image (CUDA base):    docker build --build-arg BASE=nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04 -t iadbe-gpu .
ARG BASE=python:3.11-slim
FROM ${BASE}
# PIP_BREAK_SYSTEM_PACKAGES: Ubuntu 24.04's python3 (CUDA base) refuses system-wide pip installs (PEP 668)
ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 GRADIO_SERVER_NAME=0.0.0.0 PORT=7860 PIP_BREAK_SYSTEM_PACKAGES=1
RUN if ! command -v python3 >/dev/null; then apt-get update && apt-get install -y --no-install-recommends python3 python3-pip && rm -rf /var/lib/apt/lists/*; fi \
 && (apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 && rm -rf /var/lib/apt/lists/* || true)
WORKDIR /app
COPY requirements.txt .
RUN python3 -m pip install --no-cache-dir -r requirements.txt
COPY . .
RUN python3 -m pip install --no-cache-dir --no-deps -e .
EXPOSE 7860
CMD ["python3", "app.py"]
