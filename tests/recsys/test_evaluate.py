"""The replay evaluation end to end: on small planted logs and on malformed input. (What the
full run on ml-latest-small must show is checked by bench/evaluate.py in `make bench`.)"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fixtures.synth import write_mind, write_movielens
from recsys.datasets import read_dataset
from recsys.evaluate import PAIRS, SCORERS, main, table
from recsys.interactions import from_dataset
from recsys.replay import Timeline, replay_groups
from tests.conftest import DATA


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """One evaluation run on a planted log whose last six readers click only at the end
    (readers with no train history), shared by the tests of its figures."""
    folder = write_movielens(tmp_path_factory.mktemp("ml"), late_readers=6)
    out = folder / "results.json"
    code = main(["--format", "movielens", "--data", str(folder), "--out", str(out), "--seeds", "2",
                 "--stage1-epochs", "6", "--stage2-epochs", "2", "--dim", "16", "--quiet"])
    assert code == 0
    return json.loads(out.read_text()), out


def test_results_json_has_the_documented_layout(planted):
    result, out = planted
    assert result["dataset"] == "movielens" and set(result["scorers"]) == set(SCORERS)
    for name, entry in result["scorers"].items():
        assert set(entry["overall"]) >= {"auc", "mrr", "ndcg@5", "ndcg@10", "groups", "auc_se"}, name
        assert entry["overall"]["groups"] > 50
        for bucket in entry["buckets"].values():
            assert 0 <= bucket["auc"] <= 1 and bucket["groups"] > 0
    assert {f"{a} - {b}" for a, b in PAIRS} == set(result["paired_auc_differences"])
    assert set(result["seconds"]) >= {"load", "stage1", "stage2_attention", "stage2_mean", "replay", "scoring", "total"}
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert result["config"]["arm"] == "feature"  # `ranker` is the served default: its learned model, fitted here


def test_planted_taste_is_found_by_the_learned_scorers(planted):
    result, _ = planted
    s = result["scorers"]
    assert abs(s["random"]["overall"]["auc"] - 0.5) < 0.06
    for name, floor in (("mf", 0.6), ("als", 0.65), ("itemknn", 0.7), ("ralm", 0.7), ("ralm_avg", 0.7),
                        ("coldstart_linear", 0.7), ("hybrid", 0.7), ("ranker_ctr", 0.7), ("ranker", 0.7)):
        assert s[name]["overall"]["auc"] > floor, (name, s[name]["overall"])
    pooled = s["ralm"]["pooled"]["5-99"]["auc"]
    assert pooled > s["random"]["pooled"]["5-99"]["auc"] + 0.15


def test_readers_without_train_history_have_their_own_view(planted):
    """Six readers click only at the end: each of their clicks is scored from their clicks
    before it (E_u from the tower, text profile, itemknn rows), in `unseen_readers`."""
    result, out = planted
    folder = out.parent
    assert result["unseen_readers"] == {"groups": 6 * 40, "readers": 6}
    s = result["scorers"]
    no_fold_in = {"als", "als_seed_avg"}
    assert {n for n in s if "unseen_readers" in s[n]} == set(SCORERS) - no_fold_in
    for name in set(SCORERS) - no_fold_in:
        assert set(s[name]["unseen_readers"]) == set(s[name]["overall"]), name
    assert abs(s["random"]["unseen_readers"]["auc"] - 0.5) < 0.06
    for name in ("itemknn", "coldstart_linear", "hybrid", "ranker"):  # the planted taste, from few clicks
        assert s[name]["unseen_readers"]["auc"] > 0.7, (name, s[name]["unseen_readers"])
    pairs = result["paired_auc_differences_unseen_readers"]
    assert pairs["hybrid - popularity"]["diff"] > 2 * pairs["hybrid - popularity"]["se"]
    assert "| unseen readers" in table(result)
    # The view holds only readers with no click before the test period.
    inter = from_dataset(read_dataset("movielens", folder))
    cut = result["train_before"]
    groups = replay_groups(Timeline.build(inter, train_before=cut), view="unseen_readers",
                           rng=np.random.default_rng(0))
    seen = set(inter.click_reader[inter.click_time < cut].tolist())
    assert len(groups) == 240 and not seen & set(groups.reader.tolist())


def _on_mind(tmp_path, *args: str) -> dict:
    """The replay on a planted MIND-format log, with `args` (epochs, dim, threshold)."""
    out = tmp_path / "mind.json"
    assert main(["--format", "mind", "--data", str(write_mind(tmp_path / "mind")), "--out", str(out), "--quiet",
                 *args]) == 0
    return json.loads(out.read_text())


def test_mind_format_scores_the_real_impression_lists(tmp_path, capsys):
    result = _on_mind(tmp_path, "--stage1-epochs", "4", "--stage2-epochs", "2", "--dim", "16", "--seed-threshold", "10")
    overall = result["scorers"]["ralm"]["overall"]
    assert overall["groups"] > 50 and overall["auc"] > 0.6
    assert result["scorers"]["hybrid"]["overall"]["auc"] > 0.6 and "error" not in result["calibration"]
    assert result["scorers"]["random"]["overall"]["auc_seed_sd"] == 0.0  # one draw: the logged lists
    assert "| scorer" in capsys.readouterr().out


def test_without_a_calibration_slice_the_hybrid_is_left_out_and_said_so(tmp_path):
    result = _on_mind(tmp_path, "--stage1-epochs", "1", "--stage2-epochs", "1", "--dim", "8",
                      "--seed-threshold", "1000")
    assert "hybrid" not in result["scorers"] and "no warm items" in result["calibration"]["error"]


def test_too_little_data_is_a_clear_error(capsys):
    code = main(["--format", "mind", "--data", str(DATA / "mind_sample"), "--out", "/tmp/never.json", "--quiet"])
    assert code == 2
    assert "too little data" in capsys.readouterr().err


def test_bad_data_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "movies.csv").write_text("movieId,title,genres\n1,A film,Drama\n")
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,2,4.0,100\n")
    code = main(["--format", "movielens", "--data", str(tmp_path), "--out", str(tmp_path / "r.json")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("ratings.csv:2: unknown movieId 2") and "\n" not in err


def test_events_at_the_same_time_do_not_see_each_other(tmp_path):
    """Two readers click the same item in the same second: neither click is a seed for the
    other's group; a later click sees both."""
    folder = tmp_path / "ml"
    folder.mkdir()
    (folder / "movies.csv").write_text("movieId,title,genres\n" + "".join(f"{i},M{i} (2000),Drama\n"
                                                                          for i in range(1, 17)))
    rows = ["userId,movieId,rating,timestamp"]
    rows += [f"{u},{i},4.0,{100 + u * 10 + i}" for u in (1, 2, 3) for i in range(2, 7)]  # train history
    rows += [f"4,{i},4.0,{200 + i}" for i in range(12, 17)]  # makes items 12-16 live
    rows += [f"5,{i},4.0,{4000 + i}" for i in range(12, 17)]  # test-period popularity (reader 5 is new)
    rows += ["1,1,4.0,5000", "2,1,4.0,5000", "3,1,4.0,6000"]  # item 1: two at once, then one later
    (folder / "ratings.csv").write_text("\n".join(rows) + "\n")
    inter = from_dataset(read_dataset("movielens", folder))
    groups = replay_groups(Timeline.build(inter, train_before=3000.0), view="overall", rng=np.random.default_rng(0))
    item1 = inter.item_keys.index("1")
    seeds_at_click = sorted((float(t), int(groups.seeds[g, 0])) for g, t in enumerate(groups.time)
                            if groups.items[g, 0] == item1)
    assert seeds_at_click == [(5000.0, 0), (5000.0, 0), (6000.0, 2)]
    # Negatives: live, never touched by the reader, drawn by test popularity (items 12-16).
    negatives = {inter.item_keys[i] for i in groups.items[:, 1:].ravel()}
    assert negatives <= {"12", "13", "14", "15", "16"}
    assert set(groups.reader.tolist()) == {inter.reader_keys.index(u) for u in ("1", "2", "3")}
