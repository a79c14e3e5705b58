"""Training the look-alike model (stage 2).

Training mirrors serving: seeds are the readers who clicked an item before a cut time,
reader vectors are computed from clicks before it, and the labels are what happened in the
window after it: clicks vs impressions shown but not clicked (about `negatives` per click)
where the log has impressions, else clicks vs sampled negatives (half in proportion to popularity, half
from items with a seed count in the same bucket, so that the model cannot learn popularity
alone). Several cut times through the training period (snapshots) give enough returning
readers to learn from; the latest groups are held out and reported.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from recsys.clustering import cluster_labels
from recsys.interactions import Interactions
from recsys.lookalike import LookalikeConfig, LookalikeModel
from recsys.metrics import group_metrics
from recsys.serving import LookalikeScorer

# Stage-2 cut times, as shares of the training clicks: each window runs to the next cut.
SNAPSHOT_SHARES = (0.3, 0.45, 0.6, 0.75, 0.9)
BUCKETS = (("0", 0, 0), ("1-4", 1, 4), ("5-19", 5, 19), ("20-99", 20, 99), ("100+", 100, 10**12))


def bucket_of(counts: np.ndarray) -> np.ndarray:
    """Seed count -> bucket index (0..4)."""
    return np.searchsorted(np.array([1, 5, 20, 100]), np.asarray(counts), side="right")


@dataclass
class Stage2Params:
    epochs: int = 4
    lr: float = 1e-3
    scalar_lr: float = 1e-2  # temperature, bias, alpha, beta, tau learn faster
    batch_size: int = 256
    negatives: int = 4  # per click: sampled, or kept of the unclicked impressions
    seed_cap: int = 200  # latest seeds per item
    validation_share: float = 0.15  # the latest groups of the window
    validation_from: float | None = None  # or: hold out every group from this time on
    # Keep the best validation epoch, or the last. The late-slice validation AUC was flat
    # within its noise (about +-.01) on ml-latest-small, so choosing by it chose at random.
    keep_best: bool = False
    seed: int = 0


@dataclass
class Samples:
    reader: np.ndarray  # (S,) int
    item: np.ndarray  # (S,) int
    label: np.ndarray  # (S,) float32
    group: np.ndarray  # (S,) int: a click with its negatives, or an impression list
    time: np.ndarray  # (S,) float


@dataclass
class Snapshot:
    """What stage 2 learns from at one cut time: reader vectors and seeds as of the cut, and
    the labelled pairs of the window after it."""

    e_u: np.ndarray  # (R, h) reader vectors from clicks before the cut
    seeds: list[np.ndarray]  # per item, reader indices
    samples: Samples


@dataclass
class Stage2Result:
    model: LookalikeModel
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0


def seeds_before(inter: Interactions, *, before: float, has_vector: np.ndarray, cap: int) -> list[np.ndarray]:
    """Per item, its latest `cap` distinct clickers before `before` that have a vector."""
    keep = (inter.click_time < before) & has_vector[inter.click_reader]
    out: list[list[int]] = [[] for _ in range(inter.n_items)]
    seen: set[tuple[int, int]] = set()
    for r, i in zip(inter.click_reader[keep], inter.click_item[keep], strict=True):
        if (r, i) not in seen:
            seen.add((r, i))
            out[i].append(int(r))
    return [np.array(s[-cap:], dtype=np.int64) for s in out]


def training_samples(inter: Interactions, *, seed_counts: np.ndarray, seed_before: float, until: float,
                     has_history: np.ndarray, negatives: int, rng: np.random.Generator,
                     first_seen: np.ndarray | None = None) -> Samples:
    """Labelled (reader, item) pairs in [seed_before, until) for items with at least one seed.
    Given `first_seen` (the cold-start model's view), items without seeds count too, as long
    as they are live at the click."""
    need_seeds = first_seen is None
    if inter.has_impressions:
        w = (inter.imp_time >= seed_before) & (inter.imp_time < until) & has_history[inter.imp_reader]
        if need_seeds:
            w &= seed_counts[inter.imp_item] > 0
        # Every click, and about `negatives` shown-and-not-clicked impressions per click: a
        # long log's pages are mostly unclicked, and the rest add time, not signal.
        clicked = inter.imp_clicked.astype(bool)
        n_pos, n_neg = int((w & clicked).sum()), int((w & ~clicked).sum())
        if n_neg > negatives * n_pos > 0:
            w &= clicked | (rng.random(len(w)) < negatives * n_pos / n_neg)
        return Samples(inter.imp_reader[w].astype(np.int64), inter.imp_item[w].astype(np.int64),
                       inter.imp_clicked[w].astype(np.float32), inter.imp_request[w], inter.imp_time[w])
    window = (inter.click_time >= seed_before) & (inter.click_time < until)
    touched: dict[int, set[int]] = {}
    for r, i in zip(inter.click_reader, inter.click_item, strict=True):
        touched.setdefault(int(r), set()).add(int(i))
    has_seeds = (seed_counts > 0) | (not need_seeds)
    pos = window & has_history[inter.click_reader] & has_seeds[inter.click_item]
    pop = np.bincount(inter.click_item[window], minlength=inter.n_items).astype(np.float64)
    pop[~has_seeds] = 0
    cum = np.cumsum(pop)
    buckets = bucket_of(seed_counts)
    members = [np.flatnonzero((buckets == b) & has_seeds) for b in range(len(BUCKETS))]
    reader, item, label, group, when = [], [], [], [], []
    for g, (r, i, t) in enumerate(zip(inter.click_reader[pos], inter.click_item[pos], inter.click_time[pos],
                                      strict=True)):
        seen = touched[int(r)]
        chosen: list[int] = []
        same = members[buckets[i]]
        for n in range(negatives * 20):
            if len(chosen) == negatives:
                break
            if n % 2 == 0 or len(same) < 2:
                j = int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))
            else:
                j = int(same[rng.integers(len(same))])
            if j not in seen and j not in chosen and (need_seeds or first_seen[j] <= t):
                chosen.append(j)
        for j, lab in [(int(i), 1.0)] + [(j, 0.0) for j in chosen]:
            reader.append(int(r)), item.append(j), label.append(lab), group.append(g), when.append(t)
    return Samples(np.array(reader, np.int64), np.array(item, np.int64), np.array(label, np.float32),
                   np.array(group, np.int64), np.array(when, np.float64))


class _Clusters:
    """Seed clusters of every training item for one epoch. Assignments are fixed for the
    epoch (k-means under the transform at its start); the centroids themselves are the means
    of the members' *current* transformed vectors, recomputed in each batch, so the shared
    transform learns from the seed side too. (With centroids frozen for the epoch, the
    transform drifted away from them and validation fell after the first epoch.)"""

    def __init__(self, model: LookalikeModel, e_u: np.ndarray, seeds: list[np.ndarray], items: np.ndarray,
                 random_state: int) -> None:
        scorer = LookalikeScorer.from_model(model)
        self.k = scorer.k
        readers, clusters, counts = [], [], []
        for i in items:
            s = seeds[i]
            if scorer.mode == "mean" or len(s) == 0:
                lab = np.zeros(len(s), dtype=np.int64)
            else:
                lab = cluster_labels(scorer.transform(e_u[s]), self.k, min_size=scorer.min_cluster,
                                     random_state=random_state)
            readers.append(s)
            clusters.append(lab)
            counts.append(len(s))
        self.reader = torch.from_numpy(np.concatenate(readers).astype(np.int64))
        self.cluster = torch.from_numpy(np.concatenate(clusters).astype(np.int64))
        self.start = np.concatenate([[0], np.cumsum(counts)])

    def centroids(self, transform, e_u: torch.Tensor, slots: np.ndarray):
        """slots (B,) item slots -> centroids (B, k, h), sizes (B, k), mask (B, k)."""
        uniq, inverse = np.unique(slots, return_inverse=True)
        lengths = self.start[uniq + 1] - self.start[uniq]
        idx = np.repeat(self.start[uniq] - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + \
            np.arange(lengths.sum())
        owner = torch.from_numpy(np.repeat(np.arange(len(uniq)), lengths))
        idx_t = torch.from_numpy(idx.astype(np.int64))
        where = owner * self.k + self.cluster[idx_t]  # (M,)
        h = e_u.shape[1]
        vec = transform(e_u[self.reader[idx_t]])  # (M, h)
        sums = torch.zeros(len(uniq) * self.k, h).index_add_(0, where, vec)
        sizes = torch.zeros(len(uniq) * self.k).index_add_(0, where, torch.ones(len(where)))
        cents = (sums / sizes.clamp(min=1.0).unsqueeze(-1)).view(len(uniq), self.k, h)
        sizes = sizes.view(len(uniq), self.k)
        rows = torch.from_numpy(inverse)
        return cents[rows], sizes[rows], sizes[rows] > 0


def snapshots_for(inter: Interactions, *, vectors: Callable[[float], np.ndarray], cuts: list[float], until: float,
                  seed_cap: int, negatives: int, rng: np.random.Generator) -> list[Snapshot]:
    """One Snapshot per cut time; the window of cut j runs to cut j+1 (the last to `until`).
    `vectors(t)` gives every reader's E_u from their clicks before t."""
    out = []
    for j, cut in enumerate(cuts):
        end = cuts[j + 1] if j + 1 < len(cuts) else until
        has = np.bincount(inter.click_reader[inter.click_time < cut], minlength=inter.n_readers) >= 1
        seeds = seeds_before(inter, before=cut, has_vector=has, cap=seed_cap)
        samples = training_samples(inter, seed_counts=np.array([len(x) for x in seeds]), seed_before=cut,
                                   until=end, has_history=has, negatives=negatives, rng=rng)
        if len(samples.label):
            out.append(Snapshot(vectors(cut), seeds, samples))
    return out


def _merge(snapshots: list[Snapshot]) -> tuple[np.ndarray, list[np.ndarray], Samples]:
    """Stack snapshots into one problem: reader j*R + r and item j*I + i of snapshot j."""
    n_r, n_i = len(snapshots[0].e_u), len(snapshots[0].seeds)
    e_u = np.vstack([s.e_u for s in snapshots])
    seeds = [seed + j * n_r for j, s in enumerate(snapshots) for seed in s.seeds]
    groups = np.cumsum([0] + [int(s.samples.group.max()) + 1 for s in snapshots])
    cat = lambda f, off: np.concatenate([getattr(s.samples, f) + off(j) for j, s in enumerate(snapshots)])  # noqa: E731
    samples = Samples(reader=cat("reader", lambda j: j * n_r), item=cat("item", lambda j: j * n_i),
                      label=cat("label", lambda j: 0).astype(np.float32), group=cat("group", lambda j: groups[j]),
                      time=cat("time", lambda j: 0.0))
    return e_u, seeds, samples


def fit_lookalike(
    snapshots: list[Snapshot], *, config: LookalikeConfig | None = None, params: Stage2Params | None = None,
    progress: Callable[[str, dict], None] | None = None,
) -> Stage2Result:
    started = time.perf_counter()
    if not snapshots:
        raise ValueError("no training samples: no item had seeds before a window with clicks")
    e_u, seeds, samples = _merge(snapshots)
    p = params or Stage2Params()
    cfg = config or LookalikeConfig(dim=e_u.shape[1])
    torch.manual_seed(p.seed)
    rng = np.random.default_rng(p.seed)
    model = LookalikeModel(cfg, base_rate=float(samples.label.mean()))
    scalar_ids = {id(s) for s in model.scalars()}
    opt = torch.optim.Adam([
        {"params": [q for q in model.parameters() if id(q) not in scalar_ids], "lr": p.lr},
        {"params": model.scalars(), "lr": p.scalar_lr},
    ])
    # The latest groups validate; the rest train.
    groups, first = np.unique(samples.group, return_index=True)
    last_time = samples.time[first]
    cut = np.quantile(last_time, 1 - p.validation_share) if len(groups) > 10 else np.inf
    if p.validation_from is not None:
        cut = p.validation_from
    is_val = np.isin(samples.group, groups[last_time >= cut])
    items = np.unique(samples.item)
    slot = np.full(int(items.max()) + 1, -1, dtype=np.int64)
    slot[items] = np.arange(len(items))
    e_u_t = torch.from_numpy(e_u.astype(np.float32))
    result = Stage2Result(model)
    best = (-1.0, None)
    train_idx = np.flatnonzero(~is_val)
    for epoch in range(1, p.epochs + 1):
        # Re-cluster at the start of each epoch: the transform moves the space.
        clusters = _Clusters(model, e_u, seeds, items, p.seed + epoch)
        model.train()
        order = rng.permutation(train_idx)
        total, steps = 0.0, 0
        for s in range(0, len(order), p.batch_size):
            b = order[s:s + p.batch_size]
            cents, sizes, mask = clusters.centroids(model.transform, e_u_t, slot[samples.item[b]])
            logits = model(e_u_t[samples.reader[b]], cents, sizes, mask)
            loss = F.binary_cross_entropy_with_logits(logits, torch.from_numpy(samples.label[b]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, steps = total + float(loss.detach()), steps + 1
        val = _validate(model, samples, is_val, e_u_t, clusters, slot)
        result.history.append({"epoch": epoch, "loss": round(total / max(steps, 1), 4), **val})
        if val["val_auc"] > best[0] or not p.keep_best:
            best = (val["val_auc"], copy.deepcopy(model.state_dict()))
            result.best_epoch = epoch
        if progress:
            progress("stage2", result.history[-1])
    if best[1] is not None:
        model.load_state_dict(best[1])
    model.eval()
    result.seconds = time.perf_counter() - started
    return result


def _validate(model, samples: Samples, is_val, e_u_t, clusters: _Clusters, slot) -> dict:
    idx = np.flatnonzero(is_val)
    if len(idx) == 0:
        return {"val_auc": 0.0, "val_groups": 0}
    model.eval()
    scores = np.zeros(len(idx))
    with torch.no_grad():
        for s in range(0, len(idx), 2048):
            b = idx[s:s + 2048]
            cents, sizes, mask = clusters.centroids(model.transform, e_u_t, slot[samples.item[b]])
            scores[s:s + 2048] = model(e_u_t[samples.reader[b]], cents, sizes, mask).numpy()
    m = group_metrics(scores, samples.label[idx] > 0, samples.group[idx])
    return {"val_auc": round(m["auc"], 4), "val_groups": m["groups"]}
