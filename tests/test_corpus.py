"""The demo corpus and population are real data: enough, varied, well-formed, reproducible."""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter

from fixtures.corpus import READERS_FILE, load_readers, load_stories, taxonomy_of
from fixtures.generate_readers import generate


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower())) - {"the", "a", "of", "to", "in", "and", "for", "on", "as"}


def test_at_least_300_distinct_stories_over_12_categories():
    stories = load_stories()
    assert len(stories) >= 300
    assert len({s.title for s in stories}) == len(stories)
    assert len({s.abstract for s in stories}) == len(stories)
    per_category = Counter(s.category for s in stories)
    assert len(per_category) >= 12 and min(per_category.values()) >= 15
    assert all(len(subs) >= 3 for subs in taxonomy_of(stories).values())


def test_stories_are_written_not_templated():
    stories = load_stories()
    for s in stories:
        assert 5 <= len(s.title.split()) <= 16, s.title
        assert 15 <= len(s.abstract.split()) <= 60, s.abstract
    # No two headlines share most of their words (template variations would).
    titles = [(s.id, _words(s.title)) for s in stories]
    for (a, wa), (b, wb) in itertools.combinations(titles, 2):
        assert len(wa & wb) / len(wa | wb) < 0.5, (a, b)
    # Headlines do not mostly start the same way.
    openings = Counter(" ".join(s.title.split()[:2]).lower() for s in stories)
    assert openings.most_common(1)[0][1] <= 5


def test_population_of_1000_readers_with_hidden_interests():
    readers = load_readers()
    categories = set(taxonomy_of(load_stories()))
    assert len(readers) >= 1000 and len({r.id for r in readers}) == len(readers)
    for r in readers:
        assert set(r.truth.interests) == categories
        assert abs(sum(r.truth.interests.values()) - 1) < 1e-2
        assert r.truth.taste.shape == (8,) and r.truth.activity > 0
    # Interests are concentrated (a reader has favourites), not uniform.
    top = [max(r.truth.interests.values()) for r in readers]
    assert sorted(top)[len(top) // 2] > 0.3
    # Profile fields carry signal: the young read more entertainment than the old.
    def mean_interest(band, cat):
        vals = [r.truth.interests[cat] for r in readers if r.age_band == band]
        return sum(vals) / len(vals)
    assert mean_interest("18-24", "entertainment") > 1.5 * mean_interest("65+", "entertainment")


def test_population_file_is_what_the_generator_writes():
    committed = [json.loads(line) for line in READERS_FILE.read_text().splitlines()]
    assert committed == generate(len(committed), 7)
