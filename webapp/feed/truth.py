"""What RALM adds to the count, against the demo world's truth (recsys.audience): every
scorer as a (demo readers x published demo stories with a look-alike state) matrix, then the
feed's view (per reader, the warm stories they have not clicked) and the audience view (per
story, the readers who have not clicked it, by seed bucket), each scorer alone and added to
the count, with paired standard errors.

The scorers:
- `count`: the reader's smoothed log share of clicks in the story's category, plus half the
  same for its subcategory (what the CTR model knows of the reader);
- `ralm`: the served look-alike logit; `seed_average`: the cosine of E_u with the seeds' mean
  E_u; `als`: the same look-alike over implicit-ALS factors of the clicks (a collaborative
  reference);
- `arm` and `ablation`: the default ranker arm's own score (webapp.feed.ranking.gather and
  recsys.ranker.rank, as a feed request computes it) and the same arm without RALM's term;
- `oracle`: the reader's hidden taste and audiences against the seeds' mean (no model can
  know it);
- `ceiling`: the same look-alike over reader tastes estimated from the logged impressions
  with every story's true hidden features given: the most these logs can tell.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.utils import timezone
from tqdm import tqdm

from fixtures.corpus import click_model, load_readers
from recsys.arms import ABLATIONS, ARMS
from recsys.audience import (
    count_scores,
    estimated_tastes,
    paired,
    seed_lookalike,
    view_rhos,
)
from recsys.baselines import fit_als, reader_item_matrix
from recsys.history import TruthMatrix
from recsys.ranker import rank
from recsys.serving import ItemState
from recsys.simulation import item_truth
from recsys.stage2 import BUCKETS, bucket_of
from webapp.common.connections import redis_client
from webapp.feed import ranking
from webapp.lookalike import store
from webapp.lookalike.models import LookalikeState, ModelKind, ModelRun, ReaderVector, SeedSet
from webapp.lookalike.refresh import scorer_for
from webapp.news.models import Click, Impression, Item, Reader, Source

SCORERS = ("count", "ralm", "seed_average", "als", "arm", "ablation", "ceiling", "oracle")


@dataclass
class Matrices:
    """Every scorer over the same readers and stories, and what the views need."""

    truth: np.ndarray  # (R, I) the attraction logit at age 0
    scores: dict[str, np.ndarray]  # scorer -> (R, I); NaN where it says nothing
    clicked: np.ndarray  # (R, I) bool
    seeded: np.ndarray  # (R, I) bool: the reader is one of the story's seeds
    warm: np.ndarray  # (I,) bool: the feed scores the story with RALM
    seeds: np.ndarray  # (I,) seed count
    arm: str
    ablation: str


def matrices(world: str | None = None, *, progress: bool = False) -> Matrices | None:
    """The matrices of the demo world in the database under the active models; None without
    demo readers, stories with states, or trained models."""
    world = world or settings.DEMO_WORLD
    model = click_model(world)
    truth_of = {r.id: r.truth for r in load_readers()}
    readers = [(pk, ext) for pk, ext in Reader.objects.filter(source=Source.DEMO).order_by("pk")
               .values_list("pk", "external_id") if ext in truth_of]
    look = ModelRun.objects.filter(kind=ModelKind.LOOKALIKE, is_active=True).first()
    tower = ModelRun.objects.filter(kind=ModelKind.USER_TOWER, is_active=True).first()
    if not readers or look is None or tower is None or not look.artifact_path:
        return None
    states = {s.item_id: s for s in LookalikeState.objects.filter(model_run=look, item__source=Source.DEMO,
                                                                   item__published_at__isnull=False)}
    if not states:
        return None
    # Every demo story (the count and the ceiling read all their clicks and impressions); the
    # matrices' columns are the stories with a state.
    every = list(Item.objects.filter(source=Source.DEMO).order_by("pk")
                 .values_list("pk", "external_id", "category", "subcategory", "status"))
    all_ids = np.array([i[0] for i in every])
    all_row = {int(pk): n for n, pk in enumerate(all_ids)}
    cats, subs = sorted({i[2] for i in every}), sorted({i[3] for i in every})
    all_cat = np.array([cats.index(i[2]) for i in every])
    all_sub = np.array([subs.index(i[3]) for i in every])
    cols = np.array([n for n, i in enumerate(every) if i[0] in states])
    item_ids = all_ids[cols]
    item_row = {int(pk): n for n, pk in enumerate(item_ids)}
    reader_ids = np.array([pk for pk, _ in readers])
    reader_row = {int(pk): n for n, pk in enumerate(reader_ids)}
    n_r, n_i = len(reader_ids), len(item_ids)
    all_truths = [item_truth(external_id=i[1], category=i[2], subcategory=i[3], config=model.config) for i in every]
    truth = TruthMatrix.build(model, [truth_of[ext] for _, ext in readers], all_truths)

    all_clicks = np.zeros((n_r, len(all_ids)))
    history: list[list[int]] = [[] for _ in range(n_r)]  # newest first, as the feed reads it
    for r, i in Click.objects.filter(reader_id__in=reader_ids.tolist(), item__source=Source.DEMO) \
            .order_by("-clicked_at", "-pk").values_list("reader_id", "item_id"):
        all_clicks[reader_row[r], all_row[i]] = 1.0
        history[reader_row[r]].append(int(i))
    clicked = all_clicks[:, cols] > 0
    full_count = count_scores(all_clicks, all_cat, all_sub)
    count = full_count[:, cols]

    seed_lists = dict(SeedSet.objects.filter(item_id__in=item_ids.tolist()).values_list("item_id", "seed_reader_ids"))
    seed_rows = [np.array([reader_row[s] for s in (seed_lists.get(int(i)) or []) if s in reader_row], np.int64)
                 for i in item_ids]
    seeded = np.zeros((n_r, n_i), bool)
    for i, s in enumerate(seed_rows):
        seeded[s, i] = True
    n_seeds = np.array([len(seed_lists.get(int(i)) or []) for i in item_ids])

    # E_u under the active tower; RALM's logit for every reader from each story's state.
    vectors = {pk: np.frombuffer(bytes(v), "<f4") for pk, v in ReaderVector.objects.filter(
        model_run=tower, reader_id__in=reader_ids.tolist()).values_list("reader_id", "vector")}
    if not vectors:
        return None
    e_u = np.zeros((n_r, len(next(iter(vectors.values())))))
    has = np.zeros(n_r, bool)
    for pk, vec in vectors.items():
        e_u[reader_row[pk]], has[reader_row[pk]] = vec, True
    scorer = scorer_for(look)
    ralm = np.full((n_r, n_i), np.nan)
    for i, pk in enumerate(item_ids):
        s = states[int(pk)]
        ralm[:, i] = scorer.audience(e_u, ItemState(
            np.frombuffer(bytes(s.centroids), "<f4").reshape(s.k, s.dim), np.array(s.cluster_sizes, np.float32),
            np.frombuffer(bytes(s.global_embedding), "<f4")))
    with_vec = [s[has[s]] for s in seed_rows]
    seed_average = seed_lookalike(e_u, with_vec, cosine=True)

    # A collaborative reference: ALS factors of who clicked what, seeds averaged.
    clicks_r, clicks_i = np.nonzero(all_clicks)
    als = np.full((n_r, n_i), np.nan)
    if len(clicks_r) >= 10:
        factors, _ = fit_als(reader_item_matrix(clicks_r, clicks_i, all_clicks.shape), factors=16, iterations=15)
        als = seed_lookalike(factors, seed_rows)

    # The oracle: the reader's weighted hidden traits against the seeds' mean traits.
    oracle = np.full((n_r, n_i), np.nan)
    for i, s in enumerate(seed_rows):
        if len(s):
            oracle[:, i] = truth.reader_hidden @ truth.reader_traits[s].mean(0)

    # The ceiling: reader tastes estimated from the logged impressions, true item features given.
    imp = list(Impression.objects.filter(reader_id__in=reader_ids.tolist(), item__source=Source.DEMO)
               .values_list("reader_id", "item_id", "position", "click__id").iterator(chunk_size=50_000))
    ceiling = np.full((n_r, n_i), np.nan)
    if imp:
        ir = np.array([reader_row[r] for r, _, _, _ in imp])
        ii = np.array([all_row[i] for _, i, _, _ in imp])
        pos = np.array([p for _, _, p, _ in imp], np.float64)
        hit = np.array([c is not None for _, _, _, c in imp])
        quality = np.array([t.quality for t in all_truths])
        offsets = np.stack([np.log1p(pos), full_count[ir, ii], quality[ii]], 1)
        beta = estimated_tastes(reader=ir, item=ii, clicked=hit, offsets=offsets, item_hidden=truth.item_hidden,
                                n_readers=n_r)
        ceiling = seed_lookalike(beta, seed_rows)

    # The default arm and its ablation, as a feed request scores the reader's candidates.
    arm_name = settings.FEED_ARM
    ablation_name = ABLATIONS.get(arm_name)
    arm_s, abl_s = np.full((n_r, n_i), np.nan), np.full((n_r, n_i), np.nan)
    warm = np.array([every[c][4] == "warm" for c in cols])  # without a ranker: the durable status
    r = redis_client()
    pointers = store.pointers_get(r=r)
    m = ranking.models.get(r, pointers)
    if m.ranker is not None:
        cat = ranking.catalogs.get(Source.DEMO, r, pointers)
        now = timezone.now()
        warm = np.zeros(n_i, bool)  # what the feed scored with RALM
        for n, pk in enumerate(tqdm(reader_ids, desc="arm scores", unit="reader", disable=not progress)):
            g = ranking.gather(reader_id=int(pk), cat=cat, m=m, clicked=history[n], shown={}, now=now, topics=(),
                               r=r, pointers=pointers, recall=False)
            cols_of = np.array([item_row.get(int(i), -1) for i in g.candidates.ids])
            take = cols_of >= 0
            if not take.any():
                continue
            for name, into in ((arm_name, arm_s), (ablation_name, abl_s)):
                if name not in ARMS:
                    continue
                out = rank(g.reader, g.candidates, g.scores, arm=ARMS[name], models=m.ranker, limit=1)
                # Rounded: the two arms' products differ in the last bits where their weights
                # agree, which would break their exact ties differently.
                into[n, cols_of[take]] = np.round(out.final[take], 12)
            warm[cols_of[take]] |= ~np.isnan(g.scores.ralm_logit[take])
    scores = {"count": count, "ralm": ralm, "seed_average": seed_average, "als": als, "arm": arm_s,
              "ablation": abl_s, "ceiling": ceiling, "oracle": oracle}
    return Matrices(truth=truth.base[:, cols], scores=scores, clicked=clicked, seeded=seeded, warm=warm, seeds=n_seeds,
                    arm=arm_name, ablation=ablation_name or "")


def _mean(x: np.ndarray) -> dict[str, float]:
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return {"rho": float("nan"), "se": float("nan"), "n": int(len(x))}
    return {"rho": round(float(x.mean()), 4), "se": round(float(x.std(ddof=1) / np.sqrt(len(x))), 4), "n": int(len(x))}


def _summary(rhos: dict[str, np.ndarray], units: np.ndarray) -> dict:
    """Per scorer its mean rho; per added scorer count + it against the count; the arm against
    its ablation and RALM against the seeds' mean E_u (paired over the same units)."""
    pick = {k: v[units] for k, v in rhos.items()}
    out = {"scorers": {k: _mean(v) for k, v in pick.items() if not k.startswith("+")},
           "count_plus": {k[1:]: paired(v, pick["count"]) for k, v in pick.items() if k.startswith("+")}}
    out["arm_minus_ablation"] = paired(pick["arm"], pick["ablation"])
    out["ralm_minus_seed_average"] = paired(pick["ralm"], pick["seed_average"])
    out["count_plus_ralm"] = out["count_plus"]["ralm"]
    out["ceiling"] = out["count_plus"]["ceiling"]
    out["units"] = int(np.isfinite(pick["count"]).sum())
    return out


def views(m: Matrices) -> dict:
    """Both views of the matrices: {"feed_view": summary, "buckets": {bucket: summary}}."""
    feed_mask = ~m.clicked & m.warm[None, :]
    feed = view_rhos(m.truth, m.scores, feed_mask, axis=1)
    readers = np.arange(m.truth.shape[0])
    out = {"feed_view": _summary(feed, readers) | {"stories": int(m.warm.sum())}}
    aud = view_rhos(m.truth, m.scores, ~m.clicked & ~m.seeded, axis=0)
    bucket = bucket_of(m.seeds)
    out["buckets"] = {}
    for b, (name, _, _) in enumerate(BUCKETS):
        stories = np.flatnonzero((bucket == b) & (m.seeds > 0))
        if len(stories) >= 2:
            out["buckets"][name] = _summary(aud, stories) | {"stories": int(len(stories))}
    return out


def measure(world: str | None = None, *, progress: bool = False) -> dict | None:
    """Both views of the demo world in the database, with the seconds it took."""
    started = time.perf_counter()
    m = matrices(world, progress=progress)
    if m is None:
        return None
    return views(m) | {"arm": m.arm, "ablation": m.ablation, "seconds": round(time.perf_counter() - started, 1)}
