"""Test job: prints N numbered lines, one every INTERVAL seconds, then reports a result or fails.

usage: python counter.py N INTERVAL [fail]
"""

import sys
import time

from ray_operators.contract.result import report_result

count = int(sys.argv[1])
interval = float(sys.argv[2])
fail = len(sys.argv) > 3 and sys.argv[3] == "fail"
for i in range(count):
    print(f"counter line {i}", flush=True)
    time.sleep(interval)
if fail:
    print("counter is failing on purpose", file=sys.stderr, flush=True)
    sys.exit(3)
report_result({"lines": count})
