"""Test job: prints N numbered lines as fast as it can, optionally pausing after the first P of
them for S seconds (so a task can hand over mid-job), then reports a result.

usage: python many_lines.py N [P S]
"""

import sys
import time

from ray_operators.contract.result import report_result

count = int(sys.argv[1])
pause_after = int(sys.argv[2]) if len(sys.argv) > 3 else -1
pause = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
out = sys.stdout
for i in range(count):
    if i == pause_after:
        out.flush()
        time.sleep(pause)
    out.write(f"numbered line {i}\n")
out.flush()
report_result({"lines": count})
