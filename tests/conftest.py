"""Shared test set-up: CPU only, few threads, and a fresh plugin host per test session."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
