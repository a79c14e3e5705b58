"""The MIND-format world (fixtures/mindworld.py): MIND's files and split, histories before the
train week, and a truth file that matches the files and the click model it claims."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from fixtures.corpus import load_stories, taxonomy_of
from fixtures.mindworld import (
    DEV_DIR,
    START,
    TRAIN_DIR,
    attraction_logits,
    read_truth,
    write_mind_world,
)
from recsys.mind import read_mind_folder
from recsys.simulation import ClickModel, ReaderTruth, item_truth


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("mindworld")
    meta = write_mind_world(root, news=400, users=300, impressions=600, seed=3, progress=False)
    return root, meta


def test_the_folders_parse_and_split_by_time(world):
    root, meta = world
    train, dev = read_mind_folder(root / TRAIN_DIR), read_mind_folder(root / DEV_DIR)
    start = datetime.fromtimestamp(START, tz=UTC)
    assert {i.request_id for i in train.impressions} == {f"mind-{n}" for n in range(1, 601)}
    assert all(start <= i.shown_at < start + timedelta(days=6) for i in train.impressions)
    assert all(start + timedelta(days=6) <= i.shown_at < start + timedelta(days=7) for i in dev.impressions)
    assert len({i.request_id for i in dev.impressions}) == meta[DEV_DIR]["impressions"]
    for data, name in ((train, TRAIN_DIR), (dev, DEV_DIR)):
        assert len(data.impressions) == meta[name]["shown"]
        per = {}
        for i in data.impressions:
            per[i.request_id] = per.get(i.request_id, 0) + i.clicked
        assert min(per.values()) >= 1  # every impression has a click, as in MIND
    assert len(train.readers) == 300  # every reader visits in the train week
    lines = (root / TRAIN_DIR / "news.tsv").read_text().splitlines()
    assert all(line.split("\t")[6:] == ["[]", "[]"] for line in lines)


def test_histories_are_the_clicks_before_the_train_week_the_same_in_both_folders(world):
    root, _ = world
    truth = read_truth(root)
    published = dict(zip(truth.news_id.tolist(), truth.news_published, strict=True))
    histories = {}
    for name in (TRAIN_DIR, DEV_DIR):
        for line in (root / name / "behaviors.tsv").read_text().splitlines():
            _, user, _, history, _ = line.split("\t")
            items = history.split()
            assert all(published[n] < START for n in items)
            assert [published[n] for n in items] == sorted(published[n] for n in items)  # oldest first
            assert histories.setdefault(user, items) == items
    assert sum(map(bool, histories.values())) > 0.9 * len(histories)


def test_the_truth_matches_the_files_and_the_click_model(world):
    root, _ = world
    truth = read_truth(root)
    items = read_mind_folder(root / TRAIN_DIR).items
    index = {n: k for k, n in enumerate(truth.news_id.tolist())}
    for row in items:
        assert truth.subcategories[truth.news_subcategory[index[row.external_id]]] == \
            f"{row.category}/{row.subcategory}"
    assert np.allclose(truth.user_interests.sum(1), 1.0)
    # The arrays give ClickModel.attraction_logit of the audiences world, pair by pair.
    model = ClickModel(taxonomy=taxonomy_of(load_stories()), config=truth.config)
    rng = np.random.default_rng(0)
    users, news, age = rng.integers(0, 300, 50), rng.integers(0, 400, 50), rng.uniform(0, 48, 50)
    got = attraction_logits(truth, users, news, age)
    for u, n, a, g in zip(users, news, age, got, strict=True):
        cats = truth.categories
        subs = truth.subcategories
        reader = ReaderTruth(
            interests=dict(zip(cats, truth.user_interests[u], strict=True)),
            sub_interests={c: {s.split("/")[1]: truth.user_sub_interests[u, k] for k, s in enumerate(subs)
                               if s.split("/")[0] == c} for c in cats},
            taste=truth.user_taste[u], id=str(truth.user_id[u]))
        cat, sub = truth.subcategories[truth.news_subcategory[n]].split("/")
        item = item_truth(external_id=str(truth.news_id[n]), category=cat, subcategory=sub, config=truth.config)
        assert item.audience == truth.news_audience[n]
        assert model.attraction_logit(reader, item, age_hours=a) == pytest.approx(g, abs=1e-9)


def test_the_same_seed_writes_the_same_files(world, tmp_path):
    root, _ = world
    write_mind_world(tmp_path, news=400, users=300, impressions=600, seed=3, progress=False)
    for name in (TRAIN_DIR, DEV_DIR):
        for f in ("news.tsv", "behaviors.tsv"):
            assert (tmp_path / name / f).read_bytes() == (root / name / f).read_bytes()
