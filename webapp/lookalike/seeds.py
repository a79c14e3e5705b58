"""Seed lists: each item's latest SEED_CAP distinct clickers that have a reader vector under
the active tower, latest first (ties by reader id), with each one's latest click time.

Two ways to the same list:

- **merge** (the every-minute refresh): the clicks since the last run, which a trigger on
  news_click writes to lookalike_seeddelta as one row per (item, reader) and statement,
  merged into the stored list. Its cost follows the new clicks and the dirty items' lists,
  never the click table. A delta whose reader has no vector yet stays until they have one:
  a from-scratch computation would skip that reader too, and take them once it runs again.
- **rebuild** (a new set, clicks deleted, a switch of the serving runs): the item's clicks
  ranked from the click table.

Merging a click the list already reflects changes nothing, so a delta consumed twice (a run
redone after a crash, a rebuild racing a merge) is harmless.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django.db.models.functions import Mod

from webapp.common import metrics
from webapp.lookalike.models import ModelKind, SeedSet
from webapp.lookalike.selectors import active_run

Part = tuple[int, int]  # (n, parts): the items whose id is n modulo parts

# Per item among %(items)s: its latest %(cap)s distinct clickers with a vector under the tower run %(run)s.
_LATEST_SEEDS = """
WITH last AS (
    SELECT c.item_id, c.reader_id, MAX(c.clicked_at) AS at
    FROM news_click c
    JOIN lookalike_readervector v ON v.reader_id = c.reader_id AND v.model_run_id = %(run)s
    WHERE c.item_id = ANY(%(items)s)
    GROUP BY c.item_id, c.reader_id
), ranked AS (
    SELECT item_id, reader_id, at, ROW_NUMBER() OVER (PARTITION BY item_id ORDER BY at DESC, reader_id) AS n
    FROM last
), fresh AS (
    SELECT item_id, array_agg(reader_id ORDER BY n) AS ids, array_agg(at ORDER BY n) AS ats
    FROM ranked WHERE n <= %(cap)s GROUP BY item_id
)"""

SEEDS_SQL = _LATEST_SEEDS + "\nSELECT item_id, ids, ats FROM fresh"

# The deltas of these items whose reader has a vector, taken: run before the rebuild (a later
# statement, a later snapshot) so that every delta taken is a click the rebuild reads.
_DELTAS_DROP_SQL = """
DELETE FROM lookalike_seeddelta d USING lookalike_readervector v
WHERE d.item_id = ANY(%(items)s) AND v.reader_id = d.reader_id AND v.model_run_id = %(run)s
"""

# A state is stale when its seeds changed; it is clean again and no click waits when they did not.
_SET_FLAGS = """dirty = false, updated_at = now(),
    state_dirty = s.state_dirty OR s.seed_reader_ids IS DISTINCT FROM new.ids,
    dirty_since = CASE WHEN s.state_dirty OR s.seed_reader_ids IS DISTINCT FROM new.ids THEN s.dirty_since END"""

_REBUILD_SQL = _LATEST_SEEDS + """, new AS (
    SELECT t.item_id, COALESCE(f.ids, '{}'::bigint[]) AS ids, COALESCE(f.ats, '{}'::timestamptz[]) AS ats
    FROM unnest(%(items)s::bigint[]) AS t(item_id) LEFT JOIN fresh f USING (item_id)
)
UPDATE lookalike_seedset s
SET seed_reader_ids = new.ids, seed_clicked_at = new.ats, count = cardinality(new.ids), rebuild = false,
    seeds_changed = s.seeds_changed + cardinality(new.ids) + cardinality(s.seed_reader_ids) - 2 * (
        SELECT count(*) FROM (SELECT unnest(new.ids) INTERSECT SELECT unnest(s.seed_reader_ids)) AS kept),
    """ + _SET_FLAGS + """
FROM new WHERE s.item_id = new.item_id
RETURNING s.state_dirty
"""  # noqa: S608 -- constants joined, nothing from input

# The merge. `grouped`: each item's new (reader, latest click), latest first. When all of them
# are later than the list's latest (live clicks), the merged list is they followed by the rest
# of the list in its order; otherwise (an import of older clicks) the union is ranked again.
# `entered`: new readers that made the list; as many left it as the list did not grow by.
_MERGE_SQL = """
WITH taken AS (""" + _DELTAS_DROP_SQL + """    RETURNING d.item_id, d.reader_id, d.clicked_at
), new_clicks AS (
    SELECT item_id, reader_id, max(clicked_at) AS at FROM taken GROUP BY item_id, reader_id
), grouped AS (
    SELECT item_id, array_agg(reader_id ORDER BY at DESC, reader_id) AS ids,
           array_agg(at ORDER BY at DESC, reader_id) AS ats, min(at) AS oldest
    FROM new_clicks GROUP BY item_id
), new AS (
    SELECT s.item_id, m.ids, m.ats, (SELECT count(*) FROM unnest(g.ids) AS x
                                     WHERE x <> ALL(s.seed_reader_ids) AND x = ANY(m.ids)) AS entered
    FROM lookalike_seedset s JOIN grouped g USING (item_id)
    CROSS JOIN LATERAL (
        SELECT (g.ids || array_agg(o.r ORDER BY o.n))[1:%(cap)s] AS ids,
               (g.ats || array_agg(o.at ORDER BY o.n))[1:%(cap)s] AS ats
        FROM unnest(s.seed_reader_ids, s.seed_clicked_at) WITH ORDINALITY AS o(r, at, n)
        WHERE o.r <> ALL(g.ids)
        HAVING g.oldest > s.seed_clicked_at[1]
        UNION ALL
        SELECT array_agg(r ORDER BY at DESC, r), array_agg(at ORDER BY at DESC, r) FROM (
            SELECT r, max(at) AS at FROM (
                SELECT * FROM unnest(s.seed_reader_ids, s.seed_clicked_at) AS o(r, at)
                UNION ALL SELECT * FROM unnest(g.ids, g.ats)
            ) AS u GROUP BY r ORDER BY at DESC, r LIMIT %(cap)s
        ) AS top
        HAVING NOT COALESCE(g.oldest > s.seed_clicked_at[1], false)
    ) AS m
    WHERE s.item_id = ANY(%(items)s) AND NOT s.rebuild
)
UPDATE lookalike_seedset s
SET seed_reader_ids = new.ids, seed_clicked_at = new.ats, count = cardinality(new.ids),
    seeds_changed = s.seeds_changed + 2 * new.entered + cardinality(s.seed_reader_ids) - cardinality(new.ids),
    """ + _SET_FLAGS + """
FROM new WHERE s.item_id = new.item_id
RETURNING s.state_dirty
"""  # noqa: S608 -- constants joined, nothing from input

# The batch's items that the merge found no new seeds for: their flags as a rebuild leaves them.
_UNCHANGED_SQL = """
UPDATE lookalike_seedset s SET dirty = false, updated_at = now(),
    dirty_since = CASE WHEN s.state_dirty THEN s.dirty_since END
WHERE s.item_id = ANY(%(items)s) AND s.dirty
"""


def seedsets(part: Part | None, **flags: bool) -> QuerySet:
    """Seed sets with these flags, of one partition of the items (all of them without one)."""
    qs = SeedSet.objects.filter(**flags)
    if part is None or part[1] == 1:
        return qs
    return qs.annotate(part=Mod("item_id", part[1])).filter(part=part[0])


def seeds_refresh(*, batch: int | None = None, part: Part | None = None) -> dict:
    """Update the seed lists of up to `batch` dirty items (of the partition `part`): the
    clicks since the last run merged in, or the list rebuilt from the click table where the
    set asks for it (SeedSet.rebuild). An item's state is marked stale only if its seeds
    changed."""
    batch = batch or settings.LOOKALIKE_REFRESH_BATCH
    tower = active_run(kind=ModelKind.USER_TOWER)
    if tower is None:
        return {"items": 0, "remaining": False, "skipped": "no active user tower"}
    start = time.perf_counter()
    with transaction.atomic():
        rows = list(seedsets(part, dirty=True).select_for_update(skip_locked=True)
                    .order_by("item_id").values_list("item_id", "rebuild")[:batch])
        if not rows:
            return {"items": 0, "remaining": False}
        rebuild = [i for i, r in rows if r]
        merge = [i for i, r in rows if not r]
        args = {"run": tower.pk, "cap": settings.SEED_CAP}
        changed = 0
        with connection.cursor() as cur:
            if merge:
                cur.execute(_MERGE_SQL, {**args, "items": merge})
                changed += sum(1 for (stale,) in cur.fetchall() if stale)
                cur.execute(_UNCHANGED_SQL, {"items": merge})
            if rebuild:
                # The clicks of a few thousand stories, grouped and ranked: in memory, not spilled
                # to disk under the default 4 MB (for this transaction only).
                cur.execute("SET LOCAL work_mem = '64MB'")
                cur.execute(_DELTAS_DROP_SQL, {**args, "items": rebuild})
                cur.execute(_REBUILD_SQL, {**args, "items": rebuild})
                changed += sum(1 for (stale,) in cur.fetchall() if stale)
    metrics.refresh_batch(step="seeds", seconds=time.perf_counter() - start, items=len(rows))
    remaining = seedsets(part, dirty=True).exists()
    return {"items": len(rows), "changed": changed, "rebuilt": len(rebuild), "remaining": remaining}
