"""Pipeline spec snippets the pipeline tests share."""

from __future__ import annotations

BASE = """\
name: demo
start_date: 2026-01-01
stages:
  - name: prep
    kind: preprocess
    input: raw.events
    output: feat.events
"""


GOOD = """\
name: good
start_date: 2026-01-01
schedule: "@daily"
stages:
  - name: prep
    kind: preprocess
    input: raw.events
    output: feat.events
"""
