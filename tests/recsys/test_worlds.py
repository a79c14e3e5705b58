"""Demo worlds: named click-model configs, overrides, and the audience groups they add."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures.corpus import click_model, load_readers, load_stories
from recsys.history import TruthMatrix
from recsys.simulation import DEFAULT_WORLD, WORLDS, UnknownWorld, item_truth, reader_audiences, world_config


def test_world_specs_name_a_registered_world_with_numeric_overrides():
    assert DEFAULT_WORLD in WORLDS and world_config("labels") == WORLDS["labels"]
    tuned = world_config("audiences:w_audience=1.5, audiences_per_reader=3")
    assert tuned.w_audience == 1.5 and tuned.audiences_per_reader == 3 and tuned.n_audiences == 12
    for bad, message in [("mars", "unknown demo world"), ("audiences:w_audience", "expected FIELD=NUMBER"),
                         ("audiences:colour=3", "expected FIELD=NUMBER"), ("audiences:w_audience=lots", "not a number"),
                         ("audiences:audiences_per_reader=40", "out of range"), ("", "unknown demo world")]:
        with pytest.raises(UnknownWorld, match=message):
            world_config(bad)


def test_labels_and_audiences_share_everything_but_the_groups():
    readers, stories = load_readers()[:50], load_stories()[:80]
    labels, audiences = click_model("labels"), click_model("audiences")
    for world in (labels, audiences):
        world.items = [item_truth(external_id=s.id, category=s.category, subcategory=s.subcategory,
                                  config=world.config) for s in stories]
    assert all(a.audience == -1 for a in labels.items)
    assert all(np.array_equal(a.taste, b.taste) and a.quality == b.quality
               for a, b in zip(labels.items, audiences.items, strict=True))
    groups = [a.audience for a in audiences.items]
    assert 0.6 < np.mean([g >= 0 for g in groups]) < 0.95 and len(set(groups) - {-1}) >= 8
    base_l = TruthMatrix.build(labels, [r.truth for r in readers], labels.items).base
    truth_a = TruthMatrix.build(audiences, [r.truth for r in readers], audiences.items)
    member = np.array([[reader_audiences(r.truth, audiences.config)[a.audience] if a.audience >= 0 else 0.0
                        for a in audiences.items] for r in readers])
    # The only difference is w_audience for the members of a story's group; it matches the
    # per-pair click model too.
    assert np.allclose(truth_a.base - base_l, audiences.config.w_audience * member)
    assert np.isclose(truth_a.base[3, 7], audiences.attraction_logit(readers[3].truth, audiences.items[7], age_hours=0))
    assert all(reader_audiences(r.truth, audiences.config).sum() == audiences.config.audiences_per_reader
               for r in readers)
    # What no label names is the taste match plus the group term, as reader_hidden @ item_hidden.
    c = audiences.config
    taste = np.stack([r.truth.taste for r in readers]) @ np.stack([a.taste for a in audiences.items]).T
    assert np.allclose(truth_a.reader_hidden @ truth_a.item_hidden.T,
                       c.w_taste * taste / np.sqrt(c.taste_dim) + c.w_audience * member)
