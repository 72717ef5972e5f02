"""Shared fixtures: the real-audio corpus beside the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_DIR = Path(__file__).resolve().parents[1]
CORPUS_DIR = REPO_DIR.parent / "shared" / "data" / "corpus"


@pytest.fixture(scope="session")
def repo_dir() -> Path:
    """The repository root."""
    return REPO_DIR


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """``<repo>/../shared/data/corpus`` (music/, instruments/, speech8k/); skips if absent."""
    if not (CORPUS_DIR / "music").is_dir():
        pytest.skip(f"audio corpus not found at {CORPUS_DIR}")
    return CORPUS_DIR
