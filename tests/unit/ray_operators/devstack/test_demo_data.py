"""The demo data generator: its counts match what the parser finds."""

from __future__ import annotations

from ray_operators.curation.spark_logs import parse_line
from ray_operators.devstack.demo_data import MALFORMED, generate_spark_logs


def test_generator_counts_match_what_the_parser_finds(tmp_path):
    counts = generate_spark_logs(
        tmp_path, apps=2, executors=1, lines_per_file=150, malformed_fraction=0.1, seed=9
    )
    found = {"good": 0, **dict.fromkeys(MALFORMED, 0)}
    for path in tmp_path.glob("spark-*/*.log"):
        for line in path.read_text().splitlines():
            row, reason = parse_line(line)
            found["good" if row else reason.split(":")[0]] += 1
    assert found == {"good": counts["good"], **counts["bad"]}
    assert counts["bad_total"] > 0
