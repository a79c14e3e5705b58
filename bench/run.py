"""`make bench`: every benchmark in turn (each a script of its own, stopping at the first that
fails), its wall time in results.json["bench"], then bench/report.py renders results.md and
the README's generated blocks."""

from __future__ import annotations

import subprocess
import sys
import time

from common import ROOT, save

SCRIPTS = ["bench/importer.py", "bench/refresh.py", "bench/feed.py", "bench/readers.py", "bench/load.py",
           "bench/ab.py", "bench/evaluate.py"]


def main() -> int:
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    for script in SCRIPTS:
        print(f"== {script}", flush=True)
        t = time.perf_counter()
        code = subprocess.call([sys.executable, script], cwd=ROOT)
        seconds[script] = round(time.perf_counter() - t, 1)
        if code:
            print(f"{script} failed (exit {code})", file=sys.stderr)
            return code
    save("bench", {"scripts": seconds, "total_seconds": round(time.perf_counter() - started, 1)})
    from report import main as report

    return report([])


if __name__ == "__main__":
    sys.exit(main())
