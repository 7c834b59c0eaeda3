from __future__ import annotations

from pathlib import Path

import pytest
import torch

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def official_fixture() -> dict:
    """Outputs of the official V-JEPA code on a small random checkpoint (see data/official_vjepa_small.README.md)."""
    return torch.load(DATA / "official_vjepa_small.pt", weights_only=True)


@pytest.fixture()
def official_checkpoint(official_fixture, tmp_path) -> Path:
    """The fixture's checkpoint written as an official .pth.tar file."""
    path = tmp_path / "official.pth.tar"
    torch.save(official_fixture["checkpoint"], path)
    return path
