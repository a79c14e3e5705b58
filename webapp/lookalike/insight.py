"""What the admin shows about an item's seeds: the numbers, and SVG charts drawn with
matplotlib on the server (no JavaScript, nothing fetched from elsewhere)."""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.db.models import Count, Min
from django.utils import timezone

from recsys.artifacts import ArtifactError, load_coldstart
from recsys.coldstart import reader_logits
from recsys.profiles import PROFILE_HISTORY, reader_profiles
from recsys.ranker import similarity
from recsys.serving import LookalikeScorer
from recsys.text import DIM as TEXT_DIM
from webapp.lookalike.closeness import closeness, closeness_bars, reference_readers, why_of
from webapp.lookalike.models import LookalikeState, ModelKind, ModelRun, ReaderVector, SeedSet
from webapp.lookalike.refresh import scorer_for
from webapp.news.models import Click, Item, Reader, Source

TOP_LABELS = 3  # categories and subcategories named per cluster


def svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def figure(w: float = 6.0, h: float = 2.6):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(w, h))
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


@dataclass
class ClusterRow:
    """One seed cluster of the story's state, and what its seed readers read."""

    index: int
    seeds: int  # seeds in the cluster, as the state holds it
    share: float  # percent of the story's seeds
    # (label, percent of the clicks of the seeds nearest the centroid, this story left out)
    categories: list[tuple[str, float]] = field(default_factory=list)
    subcategories: list[tuple[str, float]] = field(default_factory=list)
    nearest: int = 0  # seed readers whose nearest centroid it is now
    global_weight: float = 0.0
    local_weight: float | None = None  # the chosen reader's local attention
    cosine: float | None = None  # the chosen reader's leaning to the centroid's (closeness.Reference)
    bar: float | None = None  # the "readers like you" test's bar (closeness.closeness_bars)
    close: bool | None = None  # cosine > bar


@dataclass
class SeedView:
    item: Item
    seed_count: int = 0
    seeds: list[Reader] = field(default_factory=list)
    seed_rows: list[tuple[Reader, int | None]] = field(default_factory=list)  # (seed reader, nearest cluster)
    clusters: list[ClusterRow] = field(default_factory=list)
    cluster_sizes: list[int] = field(default_factory=list)
    history_svg: str = ""
    clusters_svg: str = ""
    projection_svg: str = ""
    reader: Reader | None = None
    score: dict | None = None
    local_weights: list[tuple[int, int, float]] = field(default_factory=list)  # (cluster, size, weight)
    global_weights: list[tuple[int, int, float]] = field(default_factory=list)
    # This story's audience against the simulated truth (demo stories only): scorer label ->
    # {"rho", "auc"} over the demo readers who have not clicked it.
    audience: list[tuple[str, float, float]] = field(default_factory=list)
    note: str = ""


def seed_view(*, item: Item, reader_id: int | None = None) -> SeedView:
    view = SeedView(item=item)
    seeds = SeedSet.objects.filter(item=item).first()
    ids = list(seeds.seed_reader_ids) if seeds else []
    view.seed_count = len(ids)
    by_id = Reader.objects.in_bulk(ids[:100])
    view.seeds = [by_id[i] for i in ids[:100] if i in by_id]
    view.seed_rows = [(r, None) for r in view.seeds]
    view.history_svg = _history_svg(item)
    view.audience = _audience(item)
    look = ModelRun.objects.filter(kind=ModelKind.LOOKALIKE, is_active=True).first()
    tower = ModelRun.objects.filter(kind=ModelKind.USER_TOWER, is_active=True).first()
    state = LookalikeState.objects.filter(item=item, model_run=look).first() if look else None
    if reader_id is not None:
        view.reader = Reader.objects.filter(pk=reader_id).first()
        if view.reader is None:
            view.note = f"No reader {reader_id}."
    if state is None or tower is None:
        view.note = view.note or "No look-alike state yet: the item has no seeds under the active model."
        return view
    try:
        scorer = scorer_for(look)
    except ArtifactError as exc:
        view.note = str(exc)
        return view
    decoded = state.item_state
    cents, e_global = decoded.centroids.astype(np.float64), decoded.e_global.astype(np.float64)
    sizes = np.array(state.cluster_sizes, np.float64)
    view.cluster_sizes = [int(s) for s in sizes]
    view.clusters_svg = _bars_svg(sizes, "seeds per cluster", "cluster")
    mask = np.ones((1, len(sizes)), bool)
    g_logits = np.tanh(cents @ scorer.w_g.T) @ scorer.v_g if scorer.mode != "mean" else np.zeros(len(sizes))
    g = np.exp(g_logits + np.log(np.maximum(sizes, 1)) - (g_logits + np.log(np.maximum(sizes, 1))).max())
    view.global_weights = [(n, int(s), round(float(w), 3)) for n, (s, w) in enumerate(zip(sizes, g / g.sum(),
                                                                                            strict=True))]
    vectors = dict(ReaderVector.objects.filter(model_run=tower, reader_id__in=ids).values_list("reader_id", "vector"))
    with_vector = [i for i in ids if i in vectors]
    seed_x = np.array([ReaderVector.vector_from(vectors[i]) for i in with_vector], np.float64)
    seed_fx = scorer.transform(seed_x) if len(seed_x) else np.zeros((0, scorer.dim))
    cluster_of = dict(zip(with_vector, _nearest(seed_fx, cents).tolist(), strict=True))
    view.seed_rows = [(r, cluster_of.get(r.pk)) for r in view.seeds]
    view.clusters = _clusters(item, sizes, [w for _, _, w in view.global_weights], cluster_of)
    reader_x = None
    if view.reader is not None:
        raw = ReaderVector.objects.filter(model_run=tower, reader=view.reader).values_list("vector", flat=True).first()
        if raw is None:
            view.note = f"Reader {view.reader.pk} has no vector under the active user tower."
        else:
            e_u = ReaderVector.vector_from(raw).astype(np.float64)
            reader_x = scorer.transform(e_u)
            logit = float(scorer.score(e_u, cents[None], sizes[None], mask, e_global[None])[0])
            w = scorer.local_weights(e_u, cents[None], sizes[None], mask)[0]
            view.local_weights = [(n, int(s), round(float(x), 3)) for n, (s, x) in enumerate(zip(sizes, w,
                                                                                                strict=True))]
            view.score = {"logit": round(logit, 4), "top_cluster": int(np.argmax(w)),
                          **_calibrated(view.reader, item, logit), **_closeness(scorer, e_u, cents, sizes, view)}
    view.projection_svg = _projection_svg(seed_fx, cents, e_global, reader_x)
    return view


def _nearest(points: np.ndarray, cents: np.ndarray) -> np.ndarray:
    """Each point's nearest centroid (Euclidean, as k-means assigns): the cluster a seed is in
    as its vector stands now."""
    if not len(points) or not len(cents):
        return np.zeros(len(points), np.int64)
    return np.argmin(((points[:, None, :] - cents[None]) ** 2).sum(-1), 1)


def _clusters(item: Item, sizes: np.ndarray, global_weights: list[float], cluster_of: dict[int, int]) \
        -> list[ClusterRow]:
    """The clusters' share of the seeds (as the state counts them) and the top categories and
    subcategories of what each cluster's seed readers clicked, this story left out (every seed
    clicked it)."""
    total = float(sizes.sum()) or 1.0
    cats: list[Counter] = [Counter() for _ in sizes]
    subs: list[Counter] = [Counter() for _ in sizes]
    rows = Click.objects.filter(reader_id__in=list(cluster_of)).exclude(item=item).order_by() \
        .values_list("reader_id", "item__category", "item__subcategory").annotate(n=Count("id"))
    for reader_id, category, subcategory, n in rows:
        c = cluster_of[reader_id]
        cats[c][category] += n
        subs[c][f"{category} / {subcategory}"] += n
    nearest = Counter(cluster_of.values())

    def top(counts: Counter) -> list[tuple[str, float]]:
        n = sum(counts.values()) or 1
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_LABELS]  # ties by name
        return [(label, round(100 * k / n, 1)) for label, k in ranked]

    return [ClusterRow(index=j, seeds=int(s), share=round(100 * float(s) / total, 1), categories=top(cats[j]),
                       subcategories=top(subs[j]), nearest=nearest.get(j, 0), global_weight=g)
            for j, (s, g) in enumerate(zip(sizes, global_weights, strict=True))]


def _closeness(scorer: LookalikeScorer, e_u: np.ndarray, cents: np.ndarray, sizes: np.ndarray,
               view: SeedView) -> dict:
    """The feed's "readers like you" test for the chosen reader (webapp.lookalike.serving:
    the same reference readers, bars and rule), into the cluster rows; the claim it allows."""
    reference = reference_readers(scorer)
    bars = closeness_bars(reference, cents)
    why, close = why_of(scorer, reference, e_u, cents, sizes, bars)
    cos = closeness(scorer, reference, e_u, cents)
    weights = {n: w for n, _, w in view.local_weights}
    for row in view.clusters:
        j = row.index
        row.local_weight, row.cosine, row.close = weights.get(j), round(float(cos[j]), 4), bool(close[j])
        row.bar = round(float(bars[j]), 4) if np.isfinite(bars[j]) else None
    return {"why": why.claim, "close_clusters": [int(j) for j in np.flatnonzero(close)], "chance": 100 - why.percent}


def _calibrated(reader: Reader, item: Item, logit: float) -> dict:
    """The calibrated P(click) the feed would give the story for the reader now: the warm map
    on (RALM logit, cold-start logit), the cold-start logit from the reader's clicks and topics
    as the feed builds them (this story left out: the feed never shows a reader a story they
    read). Built here from the active cold-start run and the reader's clicks, as
    webapp.feed.gathering builds it (the apps import one way: lookalike never imports feed).
    None, with the reason, when no calibration maps serve or the story is not published."""
    none = {"calibrated": None, "calibrated_note": "", "coldstart_logit": None}
    run = ModelRun.objects.filter(kind=ModelKind.COLDSTART, is_active=True).values_list("artifact_path", "metrics") \
        .first()
    if run is None:
        return none | {"calibrated_note": "no cold-start model is trained"}
    try:
        cold = load_coldstart(Path(run[0]))
    except ArtifactError as exc:
        return none | {"calibrated_note": str(exc)}
    maps = cold["calibration"]
    if maps is None or maps.cold is None or maps.warm is None:
        reported = (run[1] or {}).get("calibration")
        error = reported.get("error") if isinstance(reported, dict) else None
        return none | {"calibrated_note": "no calibrated ranker serves" + (
            f": the active training run fitted no calibration maps ({error})" if error else "")}
    if item.published_at is None:
        return none | {"calibrated_note": "the story is not published"}
    # The feed's catalog of the story's source: its categories, and the reader's clicks in it.
    categories = sorted(set(Item.objects.filter(source=item.source).values_list("category", flat=True)))
    clicked = [i for i in Click.objects.filter(reader=reader).order_by("-clicked_at").values_list("item_id", flat=True)
               if i != item.pk][:PROFILE_HISTORY]
    rows = {pk: (category, vector) for pk, category, vector in Item.objects.filter(
        pk__in={*clicked, item.pk}, source=item.source, published_at__isnull=False)
        .values_list("pk", "category", "text_vector")}
    ids = [i for i in clicked if i in rows][::-1] + [item.pk]  # the history oldest first, then the story
    vectors = np.stack([Item.vector_from(rows[i][1]) if rows[i][1] is not None else
                        np.zeros(TEXT_DIM, np.float32) for i in ids])
    category = np.array([categories.index(rows[i][0]) for i in ids], np.int64)
    picked = {categories.index(c) for c in reader.topics if c in categories}
    profile = reader_profiles(item_vectors=vectors, item_category=category, n_categories=len(categories),
                              histories=[np.arange(len(ids) - 1)], picked=[picked])
    lin = reader_logits(*cold["model"].linear(), profile=profile.vectors[0],
                        affinity=profile.category_affinity[0][category[-1:]], item_vectors=vectors[-1:],
                        age_hours=np.array([(timezone.now() - item.published_at).total_seconds() / 3600.0]))
    p = similarity(lin, np.array([logit]), cold_map=maps.cold, warm_map=maps.warm)
    return {"calibrated": round(float(p[0]), 4), "calibrated_note": "", "coldstart_logit": round(float(lin[0]), 4)}


AUDIENCE_LABELS = (("ralm", "RALM (the served logit)"), ("seed_average", "seeds' mean E_u"),
                   ("click_profile", "click-profile look-alike"), ("category_affinity", "category affinity (counting)"),
                   ("coldstart", "cold-start model"), ("category_truth", "the truth's category term (ceiling)"))


def _audience(item: Item) -> list[tuple[str, float, float]]:
    """(scorer, Spearman rho, AUC of the truly top 10%) for a demo story; [] otherwise."""
    from webapp.lookalike.audience import AudienceWorld

    if item.source != Source.DEMO or item.published_at is None:
        return []
    world = AudienceWorld.load()
    got = world.story(item.pk) if world is not None else None
    if got is None:
        return []
    return [(label, round(got[1][name]["rho"], 3), round(got[1][name]["auc"], 3))
            for name, label in AUDIENCE_LABELS if name in got[1]]


def _history_svg(item: Item) -> str:
    """Distinct clickers of the item over time (each reader counted at their first click)."""
    firsts = sorted(Click.objects.filter(item=item).values("reader").annotate(t=Min("clicked_at"))
                    .values_list("t", flat=True))
    fig, ax = figure()
    if firsts:
        ax.step(firsts, np.arange(1, len(firsts) + 1), where="post", color="#2b6cb0")
        if item.warm_since:
            ax.axvline(item.warm_since, color="#c05621", linestyle="--", label="turned warm")
            ax.legend(frameon=False, loc="upper left")
    ax.set_ylabel("distinct clickers")
    ax.set_title("seed readers over time", loc="left", fontsize=10)
    fig.autofmt_xdate()
    return svg(fig)


def _bars_svg(values: np.ndarray, title: str, xlabel: str) -> str:
    fig, ax = figure(6.0, 2.2)
    ax.bar(np.arange(len(values)), values, color="#2b6cb0")
    ax.set_xticks(np.arange(len(values)))
    ax.set_xlim(-0.6, max(len(values), 4) - 0.4)
    ax.set_xlabel(xlabel)
    ax.set_title(title, loc="left", fontsize=10)
    return svg(fig)


def _projection_svg(seeds: np.ndarray, cents: np.ndarray, e_global: np.ndarray, reader: np.ndarray | None) -> str:
    """PCA of the transformed seeds, with the centroids, E_global and the reader projected on
    the same two axes."""
    points = [p for p in (seeds, cents, e_global[None], reader[None] if reader is not None else None)
              if p is not None and len(p)]
    allx = np.vstack(points)
    mean = allx.mean(0)
    _, _, vt = np.linalg.svd(allx - mean, full_matrices=False)
    proj = lambda x: (x - mean) @ vt[:2].T  # noqa: E731
    fig, ax = figure(5.0, 4.0)
    if len(seeds):
        s = proj(seeds)
        nearest = np.argmin(((seeds[:, None, :] - cents[None]) ** 2).sum(-1), 1)
        ax.scatter(s[:, 0], s[:, 1], c=nearest, cmap="tab20", s=10, alpha=0.6, label="seeds")
    c = proj(cents)
    ax.scatter(c[:, 0], c[:, 1], marker="X", s=90, c="black", label="centroids")
    gl = proj(e_global[None])
    ax.scatter(gl[:, 0], gl[:, 1], marker="*", s=220, c="#c05621", label="E_global")
    if reader is not None:
        rd = proj(reader[None])
        ax.scatter(rd[:, 0], rd[:, 1], marker="D", s=90, c="#2f855a", label="reader")
    ax.legend(frameon=False, fontsize=8, loc="best")
    ax.set_title("seeds, centroids, E_global and the reader (PCA, look-alike space)", loc="left", fontsize=10)
    return svg(fig)
