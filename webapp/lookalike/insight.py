"""What the admin shows about an item's seeds: the numbers, and SVG charts drawn with
matplotlib on the server (no JavaScript, nothing fetched from elsewhere)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from django.db.models import Min

from recsys.artifacts import ArtifactError
from webapp.lookalike.models import LookalikeState, ModelKind, ModelRun, ReaderVector, SeedSet
from webapp.lookalike.refresh import scorer_for
from webapp.news.models import Click, Item, Reader, Source


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
class SeedView:
    item: Item
    seed_count: int = 0
    seeds: list[Reader] = field(default_factory=list)
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
    cents = np.frombuffer(bytes(state.centroids), "<f4").reshape(state.k, state.dim).astype(np.float64)
    sizes = np.array(state.cluster_sizes, np.float64)
    e_global = np.frombuffer(bytes(state.global_embedding), "<f4").astype(np.float64)
    view.cluster_sizes = [int(s) for s in sizes]
    view.clusters_svg = _bars_svg(sizes, "seeds per cluster", "cluster")
    mask = np.ones((1, len(sizes)), bool)
    g_logits = np.tanh(cents @ scorer.w_g.T) @ scorer.v_g if scorer.mode != "mean" else np.zeros(len(sizes))
    g = np.exp(g_logits + np.log(np.maximum(sizes, 1)) - (g_logits + np.log(np.maximum(sizes, 1))).max())
    view.global_weights = [(n, int(s), round(float(w), 3)) for n, (s, w) in enumerate(zip(sizes, g / g.sum(),
                                                                                            strict=True))]
    vectors = dict(ReaderVector.objects.filter(model_run=tower, reader_id__in=ids).values_list("reader_id", "vector"))
    seed_x = np.array([np.frombuffer(bytes(vectors[i]), "<f4") for i in ids if i in vectors], np.float64)
    reader_x = None
    if view.reader is not None:
        raw = ReaderVector.objects.filter(model_run=tower, reader=view.reader).values_list("vector", flat=True).first()
        if raw is None:
            view.note = f"Reader {view.reader.pk} has no vector under the active user tower."
        else:
            e_u = np.frombuffer(bytes(raw), "<f4").astype(np.float64)
            reader_x = scorer.transform(e_u)
            logit = float(scorer.score(e_u, cents[None], sizes[None], mask, e_global[None])[0])
            w = scorer.local_weights(e_u, cents[None], sizes[None], mask)[0]
            view.local_weights = [(n, int(s), round(float(x), 3)) for n, (s, x) in enumerate(zip(sizes, w,
                                                                                                strict=True))]
            view.score = {"logit": round(logit, 4), "probability": round(1 / (1 + np.exp(-logit)), 4),
                          "top_cluster": int(np.argmax(w))}
    view.projection_svg = _projection_svg(scorer.transform(seed_x) if len(seed_x) else np.zeros((0, scorer.dim)),
                                          cents, e_global, reader_x)
    return view


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
