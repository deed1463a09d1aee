"""The lake the lineage tests read: curated and feature tables whose commits carry lineage."""

from __future__ import annotations

import pytest

from tests.helpers.iceberg_helpers import append, create, open_catalog, rollback
from tests.helpers.lineage import run_props


@pytest.fixture
def lake(tmp_path):
    """raw.events <- curated by a Ray curate, features <- preprocess of two curated snapshots
    (a list, then a range), one features commit rolled back."""
    catalog = open_catalog(tmp_path / "lake", "lake")
    for table in ("curated.events", "features.events"):
        create(catalog, table)
    external = append(catalog, "curated.events")[0]  # written outside a pipeline
    c1 = append(catalog, "curated.events", props=run_props("curate", "r1", "curate", "curate", raw="/raw/a"))[
        0
    ]
    c2 = append(catalog, "curated.events", props=run_props("curate", "r2", "curate", "curate", raw="/raw/b"))[
        0
    ]
    f1 = append(
        catalog,
        "features.events",
        props=run_props(
            "lakehouse", "run <1>", "preprocess", "preprocess", **{"curated.events": f"{external}+{c1}"}
        ),
    )[0]
    f2 = append(
        catalog,
        "features.events",
        props=run_props(
            "lakehouse", "run 2", "preprocess", "preprocess", **{"curated.events": f"{c1}..{c2}"}
        ),
    )[0]
    rollback(catalog, "features.events")
    return catalog, {"external": external, "c1": c1, "c2": c2, "f1": f1, "f2": f2}
