"""The bulk history: the click model's truth as arrays, and the exploring logging policy's pages."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures.corpus import load_readers, load_stories, taxonomy_of
from recsys.history import TruthMatrix, session_times, simulate_history
from recsys.simulation import ClickModel, item_truth


@pytest.fixture(scope="module")
def world():
    stories = load_stories()[:120]
    model = ClickModel(taxonomy=taxonomy_of(load_stories()))
    items = [item_truth(external_id=s.id, category=s.category, subcategory=s.subcategory, config=model.config)
             for s in stories]
    readers = [r.truth for r in load_readers()[:200]]
    cats = sorted(model.taxonomy)
    return model, readers, items, np.array([cats.index(s.category) for s in stories]), len(cats)


def test_the_truth_matrix_is_the_click_models_attraction(world):
    model, readers, items, _, _ = world
    truth = TruthMatrix.build(model, readers, items)
    rng = np.random.default_rng(0)
    for r, i in rng.integers(0, [len(readers), len(items)], size=(50, 2)):
        age = float(rng.uniform(0, 30))
        expected = model.attraction_logit(readers[r], items[i], age_hours=age)
        got = truth.base[r, i] - model.config.w_freshness * age / model.config.freshness_half_life_hours
        assert got == pytest.approx(expected, abs=1e-9)


def test_pages_hold_live_unclicked_stories_and_clicks_follow_the_truth(world):
    model, readers, items, category, n_cat = world
    truth = TruthMatrix.build(model, readers, items)
    rng = np.random.default_rng(1)
    published = rng.uniform(-24, 20, len(items))
    published[:5] = np.nan  # never published
    sessions = 6000
    who = rng.integers(0, len(readers), sessions)
    when = np.sort(rng.uniform(0, 24, sessions))
    h = simulate_history(model=model, truth=truth, item_category=category, published=published, session_reader=who,
                         session_time=when, feed_size=10, n_categories=n_cat, rng=rng)
    assert not np.isin(h.item, np.arange(5)).any()
    assert (published[h.item] <= h.time).all()
    for s in rng.choice(sessions, 50, replace=False):
        page = h.session == s
        assert len(set(h.item[page])) == page.sum() and sorted(h.position[page]) == list(range(page.sum()))
    pairs = h.reader[h.clicked] * len(items) + h.item[h.clicked]
    assert len(np.unique(pairs)) == len(pairs)  # a story is clicked once per reader
    # Position bias and interest: the top converts better than the bottom, and attractive pairs
    # are clicked far more often than unattractive ones.
    assert h.clicked[h.position == 0].mean() > 2 * h.clicked[h.position == 9].mean()
    logit = truth.base[h.reader, h.item]
    high, low = logit > np.quantile(logit, 0.8), logit < np.quantile(logit, 0.2)
    assert h.clicked[high].mean() > 5 * h.clicked[low].mean()
    # The policy explores: most stories live for a while are shown at several positions.
    shown_at = [len(set(h.position[h.item == i])) for i in range(5, len(items))]
    assert np.median(shown_at) >= 5


def test_session_times_follow_the_daily_curve():
    rng = np.random.default_rng(2)
    t = session_times(hours=48, sessions=20000, end_hour_of_day=0.0, rng=rng)
    assert len(t) == 20000 and (np.diff(t) >= 0).all() and t.min() >= 0 and t.max() < 48
    hour = (t - 48 + 0.5) % 24  # clock hour, the window ending at midnight
    assert ((hour > 10) & (hour < 14)).mean() > 2 * ((hour < 2) | (hour > 22)).mean()
