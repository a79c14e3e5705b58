"""`make bench`: every benchmark in turn (each a script of its own, stopping at the first that
fails), its wall time in results.json["bench"], then bench/report.py renders results.md and
the README's generated blocks.

    python bench/run.py             # every benchmark (what `make bench` runs)
    python bench/run.py feed ab     # only these (each writes its own results and wall time)
    python bench/run.py --tiny --results /tmp/tiny.json   # each at a tiny size (`make test` runs this)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, SCRIPTS, load, save


def main(argv: list[str] | None = None) -> int:
    names = [s.removeprefix("bench/").removesuffix(".py") for s in SCRIPTS]
    parser = argparse.ArgumentParser(description="Run the benchmarks, then render bench/results.md and the "
                                                 "README's blocks.")
    parser.add_argument("only", nargs="*", metavar="NAME",
                        help=f"run only these benchmarks ({', '.join(names)}); default: all, and record the total")
    parser.add_argument("--tiny", action="store_true",
                        help="run each at a tiny size, the same code path (what `make test` runs); the committed "
                             "results, README and plots are left alone")
    parser.add_argument("--results", type=Path, help="with --tiny: where the results go (default: a temp file)")
    args = parser.parse_args(argv)
    only = args.only
    unknown = [n for n in only if n not in names]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)} (choose from {', '.join(names)})")
    if args.results and not args.tiny:
        parser.error("--results goes with --tiny (a full run writes bench/results.json)")
    env = dict(os.environ)
    if args.tiny:
        scratch = Path(tempfile.mkdtemp(prefix="ralm-bench-tiny-"))
        results = args.results or scratch / "results.json"
        # One small demo world for the scripts that need one, built by the first (bench/common.py).
        env |= {"BENCH_TINY": "1", "BENCH_RESULTS": str(results), "BENCH_WORLD_DIR": str(scratch)}
    seconds: dict[str, float] = {}
    for script in [s for s, n in zip(SCRIPTS, names, strict=True) if not only or n in only]:
        print(f"== {script}{' (tiny)' if args.tiny else ''}", flush=True)
        t = time.perf_counter()
        code = subprocess.call([sys.executable, script], cwd=ROOT, env=env)
        if code:
            print(f"{script} failed (exit {code})", file=sys.stderr)
            return code
        seconds[script] = round(time.perf_counter() - t, 1)
        if not args.tiny:
            # Each script's latest wall time, whether it ran alone or in a whole run: the
            # README's total is their sum, so it follows every script that changes.
            save("bench", {"scripts": load().get("bench", {}).get("scripts", {}) | {script: seconds[script]}})
    if args.tiny:
        print(f"tiny run: {', '.join(f'{Path(k).stem} {v:.0f}' for k, v in seconds.items())} s; results in {results}")
        return 0
    from report import main as report

    return report([])


if __name__ == "__main__":
    sys.exit(main())
