"""Where a command's CPU goes, exactly: every process that exits while it runs is counted by the
kernel's process accounting (acct(2): its user + system time at exit, short-lived ones included),
named by its command line (sampled from /proc while it lives), and added up by kind
(``bench/cpu_by_process.py``'s kinds). Needs root.

usage: sudo python bench/cpu_acct.py OUT.json -- COMMAND...   (e.g. -- make test)

OUT.json holds the totals by kind with process counts, the 40 costliest command lines, and the
machine's busy core-seconds; processes still alive at the end count from the start.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import struct
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_by_process import busy_core_seconds, cpu_ticks, kind

HZ = os.sysconf("SC_CLK_TCK")
RECORD = 64  # struct acct_v3 (linux/acct.h)


def _comp(value: int) -> int:
    """A ``comp_t``: 13-bit mantissa, 3-bit base-8 exponent."""
    return (value & 0x1FFF) << (3 * (value >> 13))


def _ticks() -> dict[str, float]:
    """CPU seconds so far of every process now running."""
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            out[pid] = cpu_ticks(pid)[0] / HZ
        except (OSError, IndexError):
            pass
    return out


def main(out: str, command: list[str]) -> int:
    pacct = out + ".pacct"
    open(pacct, "wb").close()
    names: dict[str, str] = {}
    done = threading.Event()

    def sample() -> None:  # pid -> command line, while the processes live
        while not done.is_set():
            for pid in filter(str.isdigit, os.listdir("/proc")):
                if pid not in names:
                    try:
                        line = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").strip()
                    except OSError:
                        continue
                    if line:
                        names[pid] = line.decode(errors="replace")
            time.sleep(0.2)

    libc = ctypes.CDLL(None, use_errno=True)
    before, busy = _ticks(), busy_core_seconds()
    threading.Thread(target=sample, daemon=True).start()
    if libc.acct(pacct.encode()) != 0:
        raise SystemExit(f"acct({pacct}) failed: {os.strerror(ctypes.get_errno())} (needs root)")
    started = time.time()
    try:
        rc = subprocess.call(command)
    finally:
        libc.acct(None)
        done.set()
    wall, busy = time.time() - started, busy_core_seconds() - busy
    by_kind: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    by_line: Counter[str] = Counter()
    exited = set()
    data = open(pacct, "rb").read()
    for at in range(0, len(data) - RECORD + 1, RECORD):
        record = data[at : at + RECORD]
        if record[1] & 0x0F != 3:
            raise SystemExit(f"{pacct}: not an acct_v3 record (version {record[1] & 0x0F})")
        pid = str(struct.unpack_from("<I", record, 16)[0])
        user, system = struct.unpack_from("<HH", record, 32)
        comm = record[48:64].split(b"\0")[0].decode(errors="replace")
        # AHZ ticks (comp_t rounds above 81 s); a process alive before the command counts from then.
        seconds = max(0.0, (_comp(user) + _comp(system)) / 100.0 - before.get(pid, 0.0))
        line = names.get(pid, f"[{comm}]")
        exited.add(pid)
        entry = by_kind[kind(line)]
        entry[0] += seconds
        entry[1] += 1
        by_line[re.sub(r"/tmp/\S+|eyJ\S+", "…", line)[:160]] += seconds
    for pid, seconds in _ticks().items():
        if pid not in exited and seconds - before.get(pid, 0.0) > 0.01:
            by_kind[kind(names.get(pid, pid))][0] += seconds - before.get(pid, 0.0)
    result = {
        "command": command,
        "exit_code": rc,
        "wall_s": round(wall, 1),
        "busy_core_s": round(busy, 1),
        "by_kind": {
            k: {"cpu_s": round(v[0], 1), "processes": v[1]}
            for k, v in sorted(by_kind.items(), key=lambda item: -item[1][0])
        },
        "costliest_command_lines": [[round(s, 1), line] for line, s in by_line.most_common(40)],
    }
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    os.unlink(pacct)
    return rc


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        raise SystemExit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[3:]))
