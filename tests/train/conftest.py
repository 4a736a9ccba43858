"""Fixture: the namespace of train/tokenizer.py (``main``, ``train``, ``EXIT_NONFINITE``)."""

from __future__ import annotations

import runpy
from typing import Any

import pytest
from train_recipe_helpers import RECIPE


@pytest.fixture(scope="session")
def recipe() -> dict[str, Any]:
    return runpy.run_path(str(RECIPE), run_name="__mmtok_test__")

