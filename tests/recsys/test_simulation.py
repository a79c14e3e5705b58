"""The click model behaves like the truth a recommender should discover."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures.corpus import load_readers, load_stories, taxonomy_of
from recsys.simulation import ClickModel, ClickModelConfig, ReaderTruth, item_truth


@pytest.fixture(scope="module")
def world():
    stories = load_stories()
    model = ClickModel(taxonomy=taxonomy_of(stories))
    truths = {s.id: item_truth(external_id=s.id, category=s.category, subcategory=s.subcategory,
                               config=model.config) for s in stories}
    return model, stories, truths, load_readers()


def test_item_truth_is_deterministic_and_topic_correlated():
    cfg = ClickModelConfig()
    a1 = item_truth(external_id="x-1", category="sports", subcategory="tennis", config=cfg)
    a2 = item_truth(external_id="x-1", category="sports", subcategory="tennis", config=cfg)
    assert np.array_equal(a1.taste, a2.taste) and a1.quality == a2.quality
    cos = lambda u, v: float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))  # noqa: E731
    same = [item_truth(external_id=f"s{i}", category="sports", subcategory="tennis", config=cfg).taste
            for i in range(300)]
    within = np.mean([cos(same[i], same[i + 1]) for i in range(299)])
    # A story shares 0.36 of its variance with its subcategory's direction; topics are independent.
    topics = [(c, f"sub{j}") for c in "abcdefghij" for j in range(5)]
    across = np.mean([
        cos(item_truth(external_id=f"x{i}", category=c1, subcategory=s1, config=cfg).taste,
            item_truth(external_id=f"y{i}", category=c2, subcategory=s2, config=cfg).taste)
        for i, ((c1, s1), (c2, s2)) in enumerate(zip(topics, topics[1:], strict=False))
    ])
    assert 0.25 < within < 0.5
    assert abs(across) < 0.12


def test_position_interest_and_age_move_click_probability_the_right_way(world):
    model, stories, truths, _ = world
    story = next(s for s in stories if s.category == "sports")
    item = truths[story.id]
    cats = list(model.taxonomy)
    fan = ReaderTruth(interests={c: (0.9 if c == "sports" else 0.1 / (len(cats) - 1)) for c in cats},
                      sub_interests={}, taste=np.zeros(8))
    stranger = ReaderTruth(interests={c: (0.0 if c == "sports" else 1 / (len(cats) - 1)) for c in cats},
                           sub_interests={}, taste=np.zeros(8))
    p = lambda r, pos=0, age=1.0: model.click_probability(r, item, position=pos, age_hours=age)  # noqa: E731
    assert p(fan) > 5 * p(stranger)
    assert p(fan, pos=0) > p(fan, pos=3) > p(fan, pos=9)
    assert p(fan, age=1) > p(fan, age=48)


def test_an_oracle_ranking_beats_a_random_one_by_far(world):
    """Expected clicks on a 10-story page ranked by the true attraction vs at random."""
    model, stories, truths, readers = world
    rng = np.random.default_rng(0)
    oracle, rand = 0.0, 0.0
    exam = np.array([model.examination(p) for p in range(10)])
    for reader in readers[:200]:
        attract = np.array([model.attraction(reader.truth, truths[s.id], age_hours=6.0) for s in stories])
        oracle += float(np.sort(attract)[::-1][:10] @ exam)
        rand += float(attract[rng.choice(len(stories), 10, replace=False)] @ exam)
    assert oracle > 3 * rand
