"""Model quality: the replay evaluation on ml-latest-small (python -m recsys.evaluate). Writes
bench/evaluation-movielens.json and .png, and results.json["evaluation"]; fails unless the
results hold what the project claims of them (`acceptance`). Tiny mode (bench/common.py): a
small planted MovieLens-format log, a few epochs, nothing committed is written."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from common import ROOT, TINY, save

from recsys.evaluate import main as evaluate

DATA = ROOT.parent / "shared" / "data" / "movielens" / "ml-latest-small"
OUT = ROOT / "bench" / "evaluation-movielens.json"


def acceptance(result: dict) -> list[str]:
    """What must hold on ml-latest-small; the failed claims (none: all hold)."""
    s = result["scorers"]
    pooled = {name: r["pooled"]["5-99"]["auc"] for name, r in s.items()}
    paired = result["paired_auc_differences"]["ralm - ralm_avg"]["5-99"]
    overall = {name: r["overall"]["auc"] for name, r in s.items()}
    unseen = {name: r["unseen_readers"]["auc"] for name, r in s.items() if "unseen_readers" in r}
    cal = result["calibration"]
    claims = {
        # RALM beats seeds-averaged RALM and the YouTube-DNN-style `mf` on the pooled 5-99 buckets.
        "ralm > ralm_avg and mf, pooled 5-99": pooled["ralm"] > pooled["ralm_avg"] and pooled["ralm"] > pooled["mf"],
        "ralm - ralm_avg > one standard error, pooled 5-99": paired["diff"] > paired["se"],
        # Cold start: the linear model beats popularity and random at 0 and 1-4 seeds.
        "coldstart_linear > popularity and random at 0 and 1-4 seeds": all(
            s["coldstart_linear"]["buckets"][b]["auc"] > max(s["popularity"]["buckets"][b]["auc"],
                                                            s["random"]["buckets"][b]["auc"]) for b in ("0", "1-4")),
        "hybrid >= both its parts overall": overall["hybrid"] >= max(overall["coldstart_linear"], overall["ralm"]),
        # Readers with no train history: RALM from E_u of their clicks so far.
        "over 10,000 unseen-reader groups": result["unseen_readers"]["groups"] > 10_000,
        "unseen readers: ralm > itemknn > popularity": unseen["ralm"] > unseen["itemknn"] > unseen["popularity"],
        "unseen readers: hybrid > itemknn": unseen["hybrid"] > unseen["itemknn"],
        "ranker and ranker_ctr beat popularity overall by 0.1": min(overall["ranker"], overall["ranker_ctr"])
        > overall["popularity"] + 0.1,
        "calibration maps increase": cal["warm_map"]["coef_ralm_lin"][0] > 0 and cal["cold_map"]["coef"][0] > 0,
        "calibration holds in the test period (within 0.05)": all(
            abs(cal["test_overall"][p]["predicted"] - cal["test_overall"][p]["observed"]) < 0.05
            for p in ("cold", "warm")),
    }
    return [claim for claim, held in claims.items() if not held]


def main() -> None:
    if TINY:
        from fixtures.synth import write_movielens

        folder = Path(tempfile.mkdtemp(prefix="ralm-bench-evaluate-"))
        data, out = write_movielens(folder / "ml"), folder / "evaluation.json"
        args = ["--seeds", "1", "--stage1-epochs", "6", "--stage2-epochs", "2", "--dim", "16", "--quiet"]
    else:
        if not DATA.is_dir():
            sys.exit(f"bench/evaluate.py: {DATA} not found")
        data, out, args = DATA, OUT, []
    code = evaluate(["--format", "movielens", "--data", str(data), "--out", str(out), *args])
    if code:
        sys.exit(code)
    result = json.loads(out.read_text())
    save("evaluation", {
        "dataset": data.name,
        "seconds": result["seconds"]["total"],
        "auc": {name: {"overall": r["overall"]["auc"], **{b: v["auc"] for b, v in r["buckets"].items()},
                       **{b: v["auc"] for b, v in r["pooled"].items()}} for name, r in result["scorers"].items()},
        "paired_5_99": {k: v.get("5-99") for k, v in result["paired_auc_differences"].items()},
    })
    failed = [] if TINY else acceptance(result)
    if failed:
        sys.exit("bench/evaluate.py: on ml-latest-small these no longer hold: " + "; ".join(failed))


if __name__ == "__main__":
    main()
