"""Lineage made visible: OpenLineage datasets and facets for what the stages read and wrote."""
