"""Fixture: the training entry points (``main`` = ``mmtok train``, ``train``, ``EXIT_NONFINITE``)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def recipe() -> dict[str, Any]:
    from mmtok.training.cli import EXIT_NONFINITE, train_main
    from mmtok.training.loop import train

    return {"main": train_main, "train": train, "EXIT_NONFINITE": EXIT_NONFINITE}
