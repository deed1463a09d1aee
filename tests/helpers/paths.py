"""Paths in the repository the tests read."""

from __future__ import annotations

from pathlib import Path

#: The repository's root folder.
REPO = Path(__file__).resolve().parents[2]
#: The pipeline specs the repository ships.
EXAMPLES = REPO / "dags" / "pipelines"
