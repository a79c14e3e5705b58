"""`make bench`: every benchmark in turn (each a script of its own, stopping at the first that
fails), its wall time in results.json["bench"], then bench/report.py renders results.md and
the README's generated blocks.

    python bench/run.py             # every benchmark (what `make bench` runs)
    python bench/run.py feed ab     # only these (each writes its own results; the total is left as it was)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from common import ROOT, save

SCRIPTS = ["bench/importer.py", "bench/refresh.py", "bench/feed.py", "bench/readers.py", "bench/load.py",
           "bench/ab.py", "bench/evaluate.py"]


def main(argv: list[str] | None = None) -> int:
    names = [s.removeprefix("bench/").removesuffix(".py") for s in SCRIPTS]
    parser = argparse.ArgumentParser(description="Run the benchmarks, then render bench/results.md and the "
                                                 "README's blocks.")
    parser.add_argument("only", nargs="*", metavar="NAME",
                        help=f"run only these benchmarks ({', '.join(names)}); default: all, and record the total")
    only = parser.parse_args(argv).only
    unknown = [n for n in only if n not in names]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)} (choose from {', '.join(names)})")
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    for script in [s for s, n in zip(SCRIPTS, names, strict=True) if not only or n in only]:
        print(f"== {script}", flush=True)
        t = time.perf_counter()
        code = subprocess.call([sys.executable, script], cwd=ROOT)
        seconds[script] = round(time.perf_counter() - t, 1)
        if code:
            print(f"{script} failed (exit {code})", file=sys.stderr)
            return code
    if not only:  # the total is of a whole run
        save("bench", {"scripts": seconds, "total_seconds": round(time.perf_counter() - started, 1)})
    from report import main as report

    return report([])


if __name__ == "__main__":
    sys.exit(main())
