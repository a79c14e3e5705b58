"""MIND's own protocol (recsys.mind_eval through `python -m recsys.evaluate`): two planted
MIND folders, a train week and a later test day, and one folder cut in time; the readers of
two folders; bad arguments and malformed folders."""

from __future__ import annotations

import contextlib
import io
import json
from datetime import datetime

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from fixtures.synth import write_mind, write_mind_split
from recsys.ctr import FEATURE_COLUMNS, FEATURES
from recsys.evaluate import main
from recsys.interactions import build_interactions
from recsys.mind import MIND_TIME, read_mind_split
from recsys.mind_eval import SCORERS
from recsys.pipeline import impression_log
from tests.conftest import DATA

FAST = ["--stage1-epochs", "2", "--stage2-epochs", "1", "--dim", "8", "--seed-threshold", "10", "--quiet"]
KEYS = ["auc", "auc_se", "mrr", "mrr_se", "ndcg5", "ndcg5_se", "ndcg10", "ndcg10_se"]


def _run(*args: str) -> tuple[dict, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*args, *FAST])
    assert code == 0
    path = args[args.index("--out") + 1]
    return json.loads(open(path).read()), out.getvalue()


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """One run on a train week and a test day of one planted world (6 readers new on the day),
    whose last test impression has no click (one class only: skipped)."""
    train, test = write_mind_split(tmp_path_factory.mktemp("mind"))
    with open(test / "behaviors.tsv", "a") as f:
        f.write("200000\tU1\t11/15/2019 11:59:59 PM\t\tN1-0 N2-0 N3-0\n")
    result, printed = _run("--format", "mind", "--train", str(train), "--test", str(test),
                           "--out", str(train.parent / "mind.json"))
    return result, printed, train, test


def test_every_scorer_is_in_the_table_and_the_json_with_finite_metrics(split):
    result, printed, _, _ = split
    assert result["protocol"] == "impressions" and set(result["scorers"]) == set(SCORERS)
    for name in ("random", "popularity", "als", "coldstart_linear", "ralm", "ralm_avg", "hybrid", "ranker"):
        assert f"| {name} " in printed, name
    for name, r in result["scorers"].items():
        assert all(np.isfinite(r[k]) and 0 <= r[k] <= 1 for k in KEYS), (name, r)
        assert r["impressions"] == result["impressions"]["scored"]
    assert result["impressions"] == {"test": 259, "scored": 258, "skipped_one_class": 1,
                                     "scored_readers_without_train_vector": 18, "stories_shown": 258 * 8}
    assert "258 impressions scored" in printed and "1 skipped: one class only" in printed
    for base in ("popularity", "als"):
        d = result["paired_differences"][f"ralm - {base}"]
        assert set(d) == {"auc", "mrr", "ndcg5", "ndcg10"} and d["auc"]["se"] > 0


def test_the_planted_taste_is_found(split):
    s = split[0]["scorers"]
    assert abs(s["random"]["auc"] - 0.5) < 0.06
    for name in ("ralm", "ralm_avg", "coldstart_linear", "hybrid", "ranker"):
        assert s[name]["auc"] > s["random"]["auc"] + 0.1, (name, s[name])
    d = split[0]["paired_differences"]["ralm - popularity"]["auc"]
    assert d["diff"] > 3 * d["se"]


def test_the_rankers_models_are_fitted_on_every_logged_train_impression(split):
    """`ranker_ctr` and `ranker` are fitted as the feed fits them: the CTR model on every
    shown story of the train folder (the skipped ones are its negatives), its prior the train
    impressions' CTR; their learned weights are in the JSON."""
    result, _, train, _ = split
    tokens = [t for line in (train / "behaviors.tsv").read_text().splitlines() for t in line.split("\t")[4].split()]
    clicks = sum(t.endswith("-1") for t in tokens)
    r = result["ranker_models"]
    assert r["fitted_on"] == "logged impressions" and r["impressions"] == len(tokens)
    assert r["ctr"]["rows"] == len(tokens) and r["ctr"]["clicks"] == clicks
    assert r["prior"] == pytest.approx(clicks / len(tokens))
    assert set(r["ctr"]["weights"]) == {*FEATURES, "intercept"}
    assert 0 < r["ctr_feature"]["rows"] < len(tokens) and set(r["ctr_feature"]["weights"]) == {
        *FEATURE_COLUMNS, "intercept"}
    d = result["paired_differences"]["ranker - hybrid"]["auc"]
    assert np.isfinite(d["diff"]) and d["se"] > 0


def test_an_impression_log_keeps_each_storys_place_in_its_list():
    inter = build_interactions(
        reader_keys=["a", "b"], item_keys=["x", "y", "z"], item_category=["c"] * 3, item_subcategory=["s"] * 3,
        item_text=["x", "y", "z"], clicks=[("a", "x", 5.0)],
        impressions=[("r1", "a", "x", 5.0, True), ("r1", "a", "y", 5.0, False), ("r2", "b", "z", 6.0, False),
                     ("r1", "a", "z", 5.0, False), ("r3", "b", "x", 9.0, False)])
    log = impression_log(inter, before=9.0)
    assert log.position.tolist() == [0, 1, 0, 2] and log.item.tolist() == [0, 1, 2, 2]
    assert log.reader.tolist() == [0, 0, 1, 0] and log.clicked.tolist() == [True, False, False, False]
    assert log.time.tolist() == [5.0, 5.0, 6.0, 5.0] and impression_log(inter, before=5.0) is None


def _story_clicks(train, test) -> tuple[dict, list]:
    """From the files alone: each reader's distinct history stories, the train impressions'
    clicks, and the test impressions as (time, shown stories, labels)."""
    history, clicks, impressions = {}, [], []
    for folder in (train, test):
        for line in (folder / "behaviors.tsv").read_text().splitlines():
            _, user, when, hist, shown = line.split("\t")
            history.setdefault(user, set()).update(hist.split())
            at = datetime.strptime(when, MIND_TIME)
            pairs = [token.rsplit("-", 1) for token in shown.split()]
            if folder == train:
                clicks += [n for n, c in pairs if c == "1"]
            else:
                impressions.append((at, [n for n, _ in pairs], np.array([int(c) for _, c in pairs])))
    return history, clicks, impressions


def test_popularity_is_scored_on_each_logged_list_as_of_its_time(split):
    """Recomputed from the files: popularity = the story's clicks strictly before the
    impression (histories, train impressions, earlier test impressions); per-impression AUC
    and the official MRR, over the shown lists as logged."""
    result, _, train, test = split
    history, train_clicks, impressions = _story_clicks(train, test)
    before = {}
    for n in [n for stories in history.values() for n in stories] + train_clicks:
        before[n] = before.get(n, 0) + 1
    aucs, mrrs = [], []
    for at, shown, y in impressions:
        later = [n for t, s, lab in impressions if t < at for n, c in zip(s, lab, strict=True) if c]
        if y.min() == y.max():
            continue  # the official script fails on it: skipped
        score = np.array([before.get(n, 0) + later.count(n) for n in shown], np.float64)
        aucs.append(roc_auc_score(y, score))
        order = np.argsort(score)[::-1]
        mrrs.append(np.sum(y[order] / (np.arange(len(y)) + 1)) / np.sum(y))
    pop = result["scorers"]["popularity"]
    assert pop["auc"] == pytest.approx(np.mean(aucs), abs=6e-5)
    assert pop["mrr"] == pytest.approx(np.mean(mrrs), abs=6e-5)


def test_one_folder_cut_in_time(tmp_path):
    folder = write_mind(tmp_path / "mind", history=5)
    result, printed = _run("--format", "mind", "--data", str(folder), "--protocol", "impressions",
                           "--out", str(tmp_path / "mind.json"))
    assert result["impressions"]["test"] == 80 * 12 // 5  # the last fifth of the impressions by time
    assert result["train_share"] == 0.8 and set(result["scorers"]) == set(SCORERS)
    s = result["scorers"]
    assert all(np.isfinite(r["auc"]) for r in s.values())
    assert s["ralm"]["auc"] > s["random"]["auc"] + 0.1
    assert "| ralm " in printed


def test_two_folders_read_as_one_log(tmp_path):
    """One catalog, distinct impression ids, and every history click before the test period:
    a test history's new story joins the reader's history, a new reader's history lies
    before the test day."""
    train, test = tmp_path / "train", tmp_path / "test"
    for folder, news in ((train, ("N1", "N2", "N3")), (test, ("N3", "N4", "N5"))):
        folder.mkdir()
        (folder / "news.tsv").write_text("".join(f"{n}\tnews\tsub\tTitle {n}\t\thttps://x/{n}\t[]\t[]\n"
                                                 for n in news))
    (train / "behaviors.tsv").write_text("1\tU1\t11/14/2019 10:00:00 AM\tN1\tN2-1 N3-0\n")
    (test / "behaviors.tsv").write_text("1\tU1\t11/15/2019 9:00:00 AM\tN1 N4\tN5-1 N3-0\n"
                                        "2\tU2\t11/15/2019 8:00:00 AM\tN3\tN4-0 N5-1\n")
    ds, start = read_mind_split(train, test)
    assert [i.external_id for i in ds.items] == ["N1", "N2", "N3", "N4", "N5"] and start == datetime(
        2019, 11, 15, 8, tzinfo=start.tzinfo)
    assert {i.request_id for i in ds.impressions} == {"mind-1", "mind-test-1", "mind-test-2"}
    history = sorted((c.reader, c.item) for c in ds.clicks if c.request_id is None)
    assert history == [("U1", "N1"), ("U1", "N4"), ("U2", "N3")]
    assert all(c.clicked_at < datetime(2019, 11, 14, 10, tzinfo=start.tzinfo) for c in ds.clicks
               if c.reader == "U1" and c.request_id is None)
    assert all(c.clicked_at < start for c in ds.clicks if c.request_id is None)


@pytest.mark.parametrize("args, message", [
    (["--format", "mind", "--train", "A"], "--train and --test go together"),
    (["--format", "mind", "--data", "D", "--train", "A", "--test", "B"], "not both"),
    (["--format", "movielens", "--train", "A", "--test", "B"], "use --format mind"),
    (["--format", "mind", "--train", "A", "--test", "B", "--protocol", "replay"], "the replay reads one folder"),
    (["--format", "movielens", "--data", "D", "--protocol", "impressions"], "needs logged impression lists"),
    (["--format", "mind"], "need --data DIR, or (MIND) --train A --test B"),
])
def test_bad_arguments_are_argparse_errors(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*args, "--out", "/tmp/never.json"])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_a_malformed_folder_is_a_one_line_error(tmp_path, capsys):
    train = write_mind(tmp_path / "train")
    cases = [(["--train", str(train), "--test", str(DATA / "mind_malformed")], "behaviors.tsv:3: bad time"),
             (["--data", str(DATA / "mind_malformed"), "--protocol", "impressions"], "behaviors.tsv:3: bad time"),
             (["--train", str(train), "--test", str(train)], "is not after the train folder's last"),
             (["--train", str(train), "--test", str(tmp_path / "missing")], "missing: not a folder")]
    for args, message in cases:
        code = main(["--format", "mind", *args, "--out", str(tmp_path / "never.json"), "--quiet"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and message in err and "\n" not in err and "Traceback" not in err, err
    assert not (tmp_path / "never.json").exists()
