"""Run one Python call in a fresh process and report its peak RSS and wall time (shared by the benchmarks)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

_CHILD = """
import json, resource, time
t0 = time.perf_counter()
{body}
print("@@" + json.dumps({{"seconds": time.perf_counter() - t0,
                          "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def measure(body: str) -> dict:
    """Run ``body`` (Python source) in a new interpreter; return {"seconds", "peak_rss_mb"} of that process.

    Import time is excluded from ``seconds`` only where ``body`` imports before resetting ``t0``."""
    code = _CHILD.format(body=textwrap.dedent(body))
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("@@"))
    result = json.loads(line[2:])
    result["process_seconds"] = time.perf_counter() - start
    return result
