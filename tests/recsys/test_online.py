"""The online tower: a reader's vector from their features now, without retraining, is the
trained tower's vector for the same features."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.artifacts import load_tower, save_tower
from recsys.interactions import build_interactions
from recsys.online import ClickedStory, OnlineTower
from recsys.stage1 import Stage1Params, fit_tower, reader_vectors

CATEGORIES = ["sports", "politics", "science"]
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    rng = np.random.default_rng(0)
    n_items, n_readers = 60, 40
    cats = [CATEGORIES[i % 3] for i in range(n_items)]
    subs = [f"{c}-{i % 2}" for i, c in enumerate(cats)]
    texts = [f"{c} story {WORDS[i % 7]} about {['goals', 'votes', 'atoms'][i % 3]}" for i, c in enumerate(cats)]
    clicks = []
    for r in range(n_readers):
        liked = r % 3
        for n in range(12):
            i = int(rng.choice([j for j in range(n_items) if j % 3 == liked])) if rng.random() < 0.8 else \
                int(rng.integers(n_items))
            clicks.append((str(r), str(i), float(1000 + 100 * n + r)))
    inter = build_interactions(
        reader_keys=[str(r) for r in range(n_readers)], item_keys=[str(i) for i in range(n_items)],
        item_category=cats, item_subcategory=subs, item_text=texts, clicks=clicks,
        profiles={"region": [["north", "south", ""][r % 3] for r in range(n_readers)]})
    end = float(inter.click_time[-1]) + 1
    s1 = fit_tower(inter, train_before=end, tower={"dim": 8, "field_dim": 8}, params=Stage1Params(epochs=20))
    folder = tmp_path_factory.mktemp("tower")
    save_tower(folder, s1)
    return inter, s1, end, OnlineTower(load_tower(folder)), {"cats": cats, "subs": subs, "texts": texts}


def _stories(inter, items, meta) -> list[ClickedStory]:
    return [ClickedStory(inter.item_keys[i], meta["cats"][i], meta["subs"][i], meta["texts"][i]) for i in items]


def test_a_known_reader_gets_the_trained_towers_vector(world):
    inter, s1, end, online, meta = world
    expected = reader_vectors(s1, before=end)
    hists = s1.builder.histories(before=end)
    for r in (0, 1, 2, 7):
        region = inter.profile_vocab["region"][inter.profile["region"][r]]
        got = online.vector(clicked=_stories(inter, hists[r], meta), profile={"region": region})
        assert np.allclose(got, expected[r], atol=1e-5), r


def test_new_readers_stories_and_topics_move_the_vector(world):
    inter, _, _, online, meta = world
    empty = online.vector(clicked=[])
    fields, used = online.fields(clicked=[], topics=["sports", "no-such-topic"])
    assert used.topics == 1 and fields["categories"][0, 0] == inter.categories.index("sports")
    assert not np.allclose(online.vector(clicked=[], topics=["sports"]), empty)
    # A story published after training: its category and known words still count.
    fresh = ClickedStory("999", "science", "science-0", "a new science story delta about atoms")
    fields, used = online.fields(clicked=[fresh])
    assert (used.known_items, used.new_items) == (0, 1)
    assert fields["item_ids"].sum() == 0 and fields["categories"][0, 0] == inter.categories.index("science")
    assert fields["keywords"].any()
    assert not np.allclose(online.vector(clicked=[fresh]), empty)
    # Three sports clicks bring the vector closer to sports readers' than to science readers'.
    vectors = reader_vectors(world[1], before=world[2])
    sports_readers = vectors[[r for r in range(inter.n_readers) if r % 3 == 0]].mean(0)
    science_readers = vectors[[r for r in range(inter.n_readers) if r % 3 == 2]].mean(0)
    v = online.vector(clicked=_stories(inter, [0, 3, 6], meta))

    def cos(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert cos(v, sports_readers) > cos(v, science_readers)
    assert online.vectors([]).shape == (0, online.dim)


def test_stage1_runs_fewer_epochs_where_they_would_pass_its_positives(world):
    inter, s1, end, _, _ = world
    assert len(s1.history) == 20  # this log is far below the default budget
    per_epoch = int((inter.click_time < end).sum()) - inter.n_readers  # each reader's last click is held out
    seen = []
    small = fit_tower(inter, train_before=end, tower={"dim": 8, "field_dim": 8},
                      params=Stage1Params(epochs=20, positives=3 * per_epoch + 1),
                      progress=lambda stage, e: seen.append(e["of"]))
    assert len(small.history) == 3 and seen == [3, 3, 3]
    one = fit_tower(inter, train_before=end, tower={"dim": 8, "field_dim": 8},
                    params=Stage1Params(epochs=20, positives=1))
    assert len(one.history) == 1  # at least one epoch
