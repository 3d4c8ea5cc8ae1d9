"""Run one Python call in a fresh process and report its peak RSS and wall time (shared by the benchmarks)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

_CHILD = """
import json, resource, time
t0, c0 = time.perf_counter(), time.process_time()
{body}
print("@@" + json.dumps({{"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
                          "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def measure(body: str) -> dict:
    """Run ``body`` (Python source) in a new interpreter; return {"seconds", "cpu_seconds", "peak_rss_mb"} of that
    process, plus the keys of every JSON object ``body`` prints on a line of its own after "@@".

    ``seconds`` is wall time, ``cpu_seconds`` the CPU time of all the process's threads (what other jobs on a shared
    machine do not inflate). Import time is excluded only where ``body`` imports before resetting ``t0`` and
    ``c0`` (``t0, c0 = time.perf_counter(), time.process_time()``)."""
    code = _CHILD.format(body=textwrap.dedent(body))
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    result = {}
    for line in out.splitlines():
        if line.startswith("@@"):
            result.update(json.loads(line[2:]))
    result["process_seconds"] = time.perf_counter() - start
    return result
