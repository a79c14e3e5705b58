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


@dataclass(frozen=True)
class _Index:
    """The matrices' rows and columns: demo readers with a known truth, and of `every` demo
    story (the count and the ceiling read all their clicks and impressions) those with a state."""

    readers: list[tuple[int, str]]  # (pk, external_id)
    reader_ids: np.ndarray  # (R,)
    reader_row: dict[int, int]
    every: list[tuple]  # (pk, external_id, category, subcategory, status) of every demo story
    all_ids: np.ndarray  # (A,)
    all_row: dict[int, int]
    all_cat: np.ndarray  # (A,) category index
    all_sub: np.ndarray  # (A,) subcategory index
    cols: np.ndarray  # (I,) the columns' places in `every`
    item_ids: np.ndarray  # (I,)
    item_row: dict[int, int]

    @classmethod
    def build(cls, readers: list[tuple[int, str]], states: dict) -> _Index:
        every = list(Item.objects.filter(source=Source.DEMO).order_by("pk")
                     .values_list("pk", "external_id", "category", "subcategory", "status"))
        all_ids = np.array([i[0] for i in every])
        cats, subs = sorted({i[2] for i in every}), sorted({i[3] for i in every})
        cols = np.array([n for n, i in enumerate(every) if i[0] in states])
        item_ids = all_ids[cols]
        reader_ids = np.array([pk for pk, _ in readers])
        return cls(readers=readers, reader_ids=reader_ids,
                   reader_row={int(pk): n for n, pk in enumerate(reader_ids)}, every=every, all_ids=all_ids,
                   all_row={int(pk): n for n, pk in enumerate(all_ids)},
                   all_cat=np.array([cats.index(i[2]) for i in every]),
                   all_sub=np.array([subs.index(i[3]) for i in every]), cols=cols, item_ids=item_ids,
                   item_row={int(pk): n for n, pk in enumerate(item_ids)})

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.reader_ids), len(self.item_ids)


def _active() -> tuple | None:
    """The demo readers with a known truth, the active look-alike and tower runs, and the
    stories' states under the look-alike run; None when any is missing."""
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
    return truth_of, readers, look, tower, states


def _clicks(ix: _Index) -> tuple[np.ndarray, list[list[int]]]:
    """(R, A) 0/1 clicks on every demo story, and each reader's clicked ids newest first (as
    the feed reads them)."""
    all_clicks = np.zeros((len(ix.reader_ids), len(ix.all_ids)))
    history: list[list[int]] = [[] for _ in range(len(ix.reader_ids))]
    for r, i in Click.objects.filter(reader_id__in=ix.reader_ids.tolist(), item__source=Source.DEMO) \
            .order_by("-clicked_at", "-pk").values_list("reader_id", "item_id"):
        all_clicks[ix.reader_row[r], ix.all_row[i]] = 1.0
        history[ix.reader_row[r]].append(int(i))
    return all_clicks, history


def _seeds(ix: _Index) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Per story its seeds' rows (those among the readers), the (R, I) seeded mask and its
    seed count (all of its seeds)."""
    seed_lists = dict(SeedSet.objects.filter(item_id__in=ix.item_ids.tolist())
                      .values_list("item_id", "seed_reader_ids"))
    seed_rows = [np.array([ix.reader_row[s] for s in (seed_lists.get(int(i)) or []) if s in ix.reader_row],
                          np.int64) for i in ix.item_ids]
    seeded = np.zeros(ix.shape, bool)
    for i, s in enumerate(seed_rows):
        seeded[s, i] = True
    n_seeds = np.array([len(seed_lists.get(int(i)) or []) for i in ix.item_ids])
    return seed_rows, seeded, n_seeds


def _lookalike(ix: _Index, tower: ModelRun, look: ModelRun, states: dict,
               seed_rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """E_u under the active tower; RALM's logit for every reader from each story's state, and
    the seeds' mean E_u by cosine. None without reader vectors."""
    vectors = {pk: ReaderVector.vector_from(v) for pk, v in ReaderVector.objects.filter(
        model_run=tower, reader_id__in=ix.reader_ids.tolist()).values_list("reader_id", "vector")}
    if not vectors:
        return None
    e_u = np.zeros((len(ix.reader_ids), len(next(iter(vectors.values())))))
    has = np.zeros(len(ix.reader_ids), bool)
    for pk, vec in vectors.items():
        e_u[ix.reader_row[pk]], has[ix.reader_row[pk]] = vec, True
    scorer = scorer_for(look)
    ralm = np.full(ix.shape, np.nan)
    for i, pk in enumerate(ix.item_ids):
        ralm[:, i] = scorer.audience(e_u, states[int(pk)].item_state)
    with_vec = [s[has[s]] for s in seed_rows]
    return ralm, seed_lookalike(e_u, with_vec, cosine=True)


def _als(all_clicks: np.ndarray, seed_rows: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """A collaborative reference: ALS factors of who clicked what, seeds averaged."""
    clicks_r, clicks_i = np.nonzero(all_clicks)
    if len(clicks_r) < 10:
        return np.full(shape, np.nan)
    factors, _ = fit_als(reader_item_matrix(clicks_r, clicks_i, all_clicks.shape), factors=16, iterations=15)
    return seed_lookalike(factors, seed_rows)


def _oracle(truth: TruthMatrix, seed_rows: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """The reader's weighted hidden traits against the seeds' mean traits."""
    oracle = np.full(shape, np.nan)
    for i, s in enumerate(seed_rows):
        if len(s):
            oracle[:, i] = truth.reader_hidden @ truth.reader_traits[s].mean(0)
    return oracle


def _ceiling(ix: _Index, truth: TruthMatrix, all_truths: list, full_count: np.ndarray,
             seed_rows: list[np.ndarray]) -> np.ndarray:
    """Reader tastes estimated from the logged impressions, true item features given."""
    imp = list(Impression.objects.filter(reader_id__in=ix.reader_ids.tolist(), item__source=Source.DEMO)
               .values_list("reader_id", "item_id", "position", "click__id").iterator(chunk_size=50_000))
    if not imp:
        return np.full(ix.shape, np.nan)
    ir = np.array([ix.reader_row[r] for r, _, _, _ in imp])
    ii = np.array([ix.all_row[i] for _, i, _, _ in imp])
    pos = np.array([p for _, _, p, _ in imp], np.float64)
    hit = np.array([c is not None for _, _, _, c in imp])
    quality = np.array([t.quality for t in all_truths])
    offsets = np.stack([np.log1p(pos), full_count[ir, ii], quality[ii]], 1)
    beta = estimated_tastes(reader=ir, item=ii, clicked=hit, offsets=offsets, item_hidden=truth.item_hidden,
                            n_readers=len(ix.reader_ids))
    return seed_lookalike(beta, seed_rows)


def _arm_scores(ix: _Index, history: list[list[int]], arm_name: str, ablation_name: str | None, *,
                progress: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The default arm and its ablation, as a feed request scores the reader's candidates, and
    which stories the feed scored with RALM (without a ranker: the durable status)."""
    arm_s, abl_s = np.full(ix.shape, np.nan), np.full(ix.shape, np.nan)
    warm = np.array([ix.every[c][4] == "warm" for c in ix.cols])
    r = redis_client()
    pointers = store.pointers_get(r=r)
    m = ranking.models.get(r, pointers)
    if m.ranker is None:
        return arm_s, abl_s, warm
    cat = ranking.catalogs.get(Source.DEMO, r, pointers)
    now = timezone.now()
    warm = np.zeros(ix.shape[1], bool)  # what the feed scored with RALM
    for n, pk in enumerate(tqdm(ix.reader_ids, desc="arm scores", unit="reader", disable=not progress)):
        g = ranking.gather(reader_id=int(pk), cat=cat, m=m, clicked=history[n], shown={}, now=now, topics=(),
                           r=r, pointers=pointers, recall=False)
        cols_of = np.array([ix.item_row.get(int(i), -1) for i in g.candidates.ids])
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
    return arm_s, abl_s, warm


def matrices(world: str | None = None, *, progress: bool = False) -> Matrices | None:
    """The matrices of the demo world in the database under the active models; None without
    demo readers, stories with states, or trained models."""
    world = world or settings.DEMO_WORLD
    model = click_model(world)
    active = _active()
    if active is None:
        return None
    truth_of, readers, look, tower, states = active
    ix = _Index.build(readers, states)
    all_truths = [item_truth(external_id=i[1], category=i[2], subcategory=i[3], config=model.config)
                  for i in ix.every]
    truth = TruthMatrix.build(model, [truth_of[ext] for _, ext in readers], all_truths)
    all_clicks, history = _clicks(ix)
    full_count = count_scores(all_clicks, ix.all_cat, ix.all_sub)
    seed_rows, seeded, n_seeds = _seeds(ix)
    lookalike = _lookalike(ix, tower, look, states, seed_rows)
    if lookalike is None:
        return None
    ralm, seed_average = lookalike
    als = _als(all_clicks, seed_rows, ix.shape)
    oracle = _oracle(truth, seed_rows, ix.shape)
    ceiling = _ceiling(ix, truth, all_truths, full_count, seed_rows)
    arm_name = settings.FEED_ARM
    ablation_name = ABLATIONS.get(arm_name)
    arm_s, abl_s, warm = _arm_scores(ix, history, arm_name, ablation_name, progress=progress)
    scores = {"count": full_count[:, ix.cols], "ralm": ralm, "seed_average": seed_average, "als": als,
              "arm": arm_s, "ablation": abl_s, "ceiling": ceiling, "oracle": oracle}
    return Matrices(truth=truth.base[:, ix.cols], scores=scores, clicked=all_clicks[:, ix.cols] > 0, seeded=seeded,
                    warm=warm, seeds=n_seeds, arm=arm_name, ablation=ablation_name or "")


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
