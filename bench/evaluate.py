"""Model quality: the replay evaluation on ml-latest-small (python -m recsys.evaluate).
Writes bench/evaluation-movielens.json and .png, and results.json["evaluation"]."""

from __future__ import annotations

import json
import sys

from common import ROOT, save

from recsys.evaluate import main as evaluate

DATA = ROOT.parent / "shared" / "data" / "movielens" / "ml-latest-small"
OUT = ROOT / "bench" / "evaluation-movielens.json"


def main() -> None:
    if not DATA.is_dir():
        sys.exit(f"bench/evaluate.py: {DATA} not found")
    code = evaluate(["--format", "movielens", "--data", str(DATA), "--out", str(OUT)])
    if code:
        sys.exit(code)
    result = json.loads(OUT.read_text())
    save("evaluation", {
        "dataset": "ml-latest-small",
        "seconds": result["seconds"]["total"],
        "auc": {name: {"overall": r["overall"]["auc"], **{b: v["auc"] for b, v in r["buckets"].items()},
                       **{b: v["auc"] for b, v in r["pooled"].items()}} for name, r in result["scorers"].items()},
        "paired_5_99": {k: v["5-99"] for k, v in result["paired_auc_differences"].items()},
    })


if __name__ == "__main__":
    main()
