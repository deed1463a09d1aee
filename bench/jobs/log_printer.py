"""Bench job: prints TOTAL_BYTES of numbered ~100-byte lines at RATE bytes/s, then a result.

usage: python log_printer.py TOTAL_BYTES RATE
"""

import sys
import time

from ray_operators.contract.result import report_result

total, rate = int(sys.argv[1]), float(sys.argv[2])
LINE = 100  # bytes, newline included
lines = total // LINE
pad = "x" * (LINE - 11)
per_tick = max(int(rate * 0.01) // LINE, 1)  # lines per 10 ms
out = sys.stdout
started = time.monotonic()
i = 0
while i < lines:
    end = min(i + per_tick, lines)
    out.write("".join(f"{n:09d} {pad}\n" for n in range(i, end)))
    out.flush()
    i = end
    # Keep to the rate: sleep until this many bytes are due.
    due = started + i * LINE / rate
    if (wait := due - time.monotonic()) > 0:
        time.sleep(wait)
report_result({"lines": lines})
