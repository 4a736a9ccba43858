"""Fixture: the namespace of train/tokenizer.py (``main``, ``train``, ``EXIT_NONFINITE``)."""

from __future__ import annotations

import runpy
from typing import Any

import pytest
from train_recipe_helpers import RECIPE


@pytest.fixture(scope="session")
def recipe() -> dict[str, Any]:
    return runpy.run_path(str(RECIPE), run_name="__mmtok_test__")


@pytest.fixture(autouse=True)
def _one_cpu_thread():
    """Tiny models run fastest single-threaded; on a shared, busy CPU extra threads only spin."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
