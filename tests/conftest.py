from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory):
    """Decoded-clip caches of the tests go to a temporary folder, never to the user's ~/.cache."""
    before = os.environ.get("VJEPA_CACHE_DIR")
    os.environ["VJEPA_CACHE_DIR"] = str(tmp_path_factory.mktemp("vjepa_cache"))
    yield
    if before is None:
        os.environ.pop("VJEPA_CACHE_DIR", None)
    else:
        os.environ["VJEPA_CACHE_DIR"] = before


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
