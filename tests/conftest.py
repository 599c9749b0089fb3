"""Shared test configuration: hypothesis profiles sized for 2-core CI machines."""

import os

import torch
from hypothesis import HealthCheck, settings

# Without a GPU, run the Triton kernels in Triton's CPU interpreter (when triton is installed),
# so their tests run in CI instead of skipping. Must happen before anything imports triton.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
