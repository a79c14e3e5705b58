"""Training the user tower (stage 1) and computing reader vectors E_u."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from recsys.features import FeatureBuilder
from recsys.interactions import Interactions
from recsys.sampling import LogUniformSampler
from recsys.tower import ItemSoftmax, TowerConfig, UserTower, sampled_softmax_loss


@dataclass
class Stage1Params:
    epochs: int = 30  # a fixed cap; the best validation epoch is kept
    lr: float = 3e-3  # 1e-3 sat on a plateau in a prototype; 1e-2 was worse
    batch_size: int = 256
    positives_per_reader: int = 50  # per epoch, as in the paper
    # An epoch's positives at most: past it every reader gets the same smaller share, so an
    # epoch's cost stops growing with the readers and a large log is seen over several epochs.
    positives_per_epoch: int = 200_000
    # Positives over all epochs at most: a log past it trains fewer epochs (at least one), so
    # that training time stops growing with the log; smaller logs run every epoch.
    positives: int = 1_200_000
    negatives: int = 10  # per positive
    weight_decay: float = 0.0
    validation_negatives: int = 100
    # Weight of the audience side of the loss: each positive's item against the batch's other
    # readers (which of them clicked it). The item softmax alone ranks items for a reader and
    # leaves each reader's logits an arbitrary shift apart, so E_u did not order readers by
    # their interest in a story, which is what a look-alike asks of it.
    audience_loss: float = 1.0
    seed: int = 0


@dataclass
class Stage1Result:
    tower: UserTower
    softmax: ItemSoftmax
    builder: FeatureBuilder
    train_before: float
    history: list[dict] = field(default_factory=list)  # per epoch: loss, validation AUC
    best_epoch: int = 0
    seconds: float = 0.0


def _to_torch(fields: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in fields.items()}


def _without(hist: np.ndarray, item: int, keep: int) -> np.ndarray:
    pos = np.flatnonzero(hist == item)
    if len(pos):
        hist = np.delete(hist, pos[0])
    return hist[-keep:]


def reader_vectors(result: Stage1Result, *, before: float, readers: np.ndarray | None = None,
                   batch_size: int = 1024) -> np.ndarray:
    """E_u of each reader from their clicks before `before` and their profile: (R, dim)
    float32. A reader with no clicks gets the vector of their profile alone."""
    readers = np.arange(result.builder.inter.n_readers) if readers is None else np.asarray(readers)
    return vectors_for(result, readers, result.builder.histories(before=before, readers=readers), batch_size)


def vectors_for(result: Stage1Result, readers: np.ndarray, histories: list[np.ndarray],
                batch_size: int = 1024) -> np.ndarray:
    """E_u for (reader, history) pairs: each history (item indices, oldest first) stands for
    that reader's clicks at some moment (the replay's readers without train history)."""
    builder, tower = result.builder, result.tower
    readers = np.asarray(readers)
    out = np.zeros((len(readers), tower.config.dim), dtype=np.float32)
    tower.eval()
    with torch.no_grad():
        for s in range(0, len(readers), batch_size):
            fields = builder.batch(readers[s:s + batch_size], histories[s:s + batch_size])
            out[s:s + batch_size] = tower(_to_torch(fields))[0].numpy()
    return out


@dataclass
class _Holdout:
    """Each reader's last train click held out (from both targets and inputs) to validate."""

    hists: list[np.ndarray]  # per reader, the latest max_history train clicks, oldest first
    by_reader: list[list[int]]  # per reader, the train clicks that are positives
    val_reader: np.ndarray  # (V,)
    val_item: np.ndarray  # (V,)


def _holdout(inter: Interactions, builder: FeatureBuilder, train: np.ndarray, train_before: float) -> _Holdout:
    hists = builder.histories(before=train_before, extra=1)  # latest max_history + 1, oldest first
    val_reader, val_item = [], []
    for r, h in enumerate(hists):
        if len(h) >= 3:
            val_reader.append(r)
            val_item.append(int(h[-1]))
            hists[r] = h[:-1]
    # Positives: every train click except the held-out ones.
    by_reader = [[] for _ in range(inter.n_readers)]
    held = set(zip(val_reader, val_item, strict=True))
    for r, i in zip(inter.click_reader[train], inter.click_item[train], strict=True):
        by_reader[r].append(int(i))
    for r, i in held:
        by_reader[r].remove(i)
    return _Holdout(hists, by_reader, np.array(val_reader, dtype=np.int64), np.array(val_item, dtype=np.int64))


@dataclass
class _Step:
    """What one epoch of stage 1 trains with."""

    inter: Interactions
    params: Stage1Params
    model: UserTower
    softmax: ItemSoftmax
    builder: FeatureBuilder
    sampler: LogUniformSampler
    opt: torch.optim.Optimizer
    clicked_keys: np.ndarray  # reader * n_items + item of every train click


def _epoch(st: _Step, held: _Holdout, rng: np.random.Generator) -> float:
    """One epoch over at most positives_per_reader positives per reader (fewer where the
    readers would pass positives_per_epoch); the mean loss."""
    p, inter = st.params, st.inter
    readers, targets = [], []
    per_reader = _per_reader(p, held)
    for r, items in enumerate(held.by_reader):
        if items:
            take = rng.choice(len(items), size=min(len(items), per_reader), replace=False)
            readers.extend([r] * len(take))
            targets.extend(items[t] for t in take)
    order = rng.permutation(len(readers))
    readers, targets = np.array(readers)[order], np.array(targets)[order]
    # How often each reader is drawn this epoch: the in-batch readers' sampling correction.
    reader_log_q = np.log(np.maximum(np.bincount(readers, minlength=inter.n_readers), 1) / max(len(readers), 1))
    st.model.train()
    total, steps = 0.0, 0
    for s in range(0, len(readers), p.batch_size):
        rb, tb = readers[s:s + p.batch_size], targets[s:s + p.batch_size]
        fields = st.builder.batch(rb, [_without(held.hists[r], t, st.model.config.max_history)
                                       for r, t in zip(rb, tb, strict=True)])
        negs = st.sampler.sample((len(rb), p.negatives), rng)
        cands = np.concatenate([tb[:, None], negs], axis=1)  # (B, 1 + negatives)
        log_q = np.log(p.negatives * st.sampler.probability(cands))
        e_u, _ = st.model(_to_torch(fields))
        logits = st.softmax.logits(e_u, torch.from_numpy(cands))
        accidental = np.concatenate([np.zeros((len(rb), 1), bool), negs == tb[:, None]], axis=1)
        loss = sampled_softmax_loss(logits, torch.from_numpy(log_q).float(), torch.from_numpy(accidental))
        if p.audience_loss > 0:
            loss = loss + p.audience_loss * _audience_loss(e_u, st.softmax, rb, tb, reader_log_q, st.clicked_keys,
                                                           inter.n_items)
        st.opt.zero_grad()
        loss.backward()
        st.opt.step()
        total, steps = total + float(loss.detach()), steps + 1
    return total / max(steps, 1)


def _per_reader(p: Stage1Params, held: _Holdout) -> int:
    """Positives per reader in an epoch."""
    active = sum(1 for items in held.by_reader if items)
    return max(1, min(p.positives_per_reader, p.positives_per_epoch // max(active, 1)))


def epochs_for(p: Stage1Params, held: _Holdout) -> int:
    """The epochs to run: p.epochs, fewer where they would pass p.positives."""
    per_reader = _per_reader(p, held)
    per_epoch = sum(min(len(items), per_reader) for items in held.by_reader)
    return max(1, min(p.epochs, p.positives // max(per_epoch, 1)))


def fit_tower(
    inter: Interactions, *, train_before: float, tower: dict | None = None,
    params: Stage1Params | None = None, progress: Callable[[str, dict], None] | None = None,
) -> Stage1Result:
    """Train on clicks before `train_before`; `tower` overrides TowerConfig defaults (dim,
    field_dim, ...). Each reader's last such click is held out (from
    both targets and inputs) to pick the best epoch: AUC of the held-out item against
    uniformly drawn items that had train clicks."""
    started = time.perf_counter()
    p = params or Stage1Params()
    rng = np.random.default_rng(p.seed)
    torch.manual_seed(p.seed)
    options = dict(tower or {})
    builder = FeatureBuilder(inter, max_history=options.get("max_history", TowerConfig.max_history))
    cfg = TowerConfig(fields={s.name: s.vocab for s in builder.specs}, n_items=inter.n_items, **options)
    model, softmax = UserTower(cfg), ItemSoftmax(inter.n_items, cfg.dim)

    train = inter.click_time < train_before
    counts = np.bincount(inter.click_item[train], minlength=inter.n_items)
    held = _holdout(inter, builder, train, train_before)
    val_negs = rng.choice(np.flatnonzero(counts > 0), size=(len(held.val_reader), p.validation_negatives))
    clicked_keys = np.unique(inter.click_reader[train].astype(np.int64) * inter.n_items + inter.click_item[train])
    opt = torch.optim.Adam([*model.parameters(), *softmax.parameters()], lr=p.lr, weight_decay=p.weight_decay)
    step = _Step(inter, p, model, softmax, builder, LogUniformSampler(counts), opt, clicked_keys)
    result = Stage1Result(model, softmax, builder, train_before)
    best = (-1.0, None)
    epochs = epochs_for(p, held)
    for epoch in range(1, epochs + 1):
        loss = _epoch(step, held, rng)
        auc = _validate(result, held.hists, held.val_reader, held.val_item, val_negs)
        result.history.append({"epoch": epoch, "loss": round(loss, 4), "val_auc": round(auc, 4)})
        if auc > best[0]:
            best = (auc, copy.deepcopy((model.state_dict(), softmax.state_dict())))
            result.best_epoch = epoch
        if progress:
            progress("stage1", {**result.history[-1], "of": epochs})
    model.load_state_dict(best[1][0])
    softmax.load_state_dict(best[1][1])
    model.eval()
    result.seconds = time.perf_counter() - started
    return result


def _audience_loss(e_u: torch.Tensor, softmax: ItemSoftmax, readers: np.ndarray, items: np.ndarray,
                   reader_log_q: np.ndarray, clicked_keys: np.ndarray, n_items: int) -> torch.Tensor:
    """In-batch softmax over readers: for positive b (reader r_b clicked item i_b), r_b
    against the batch's other readers, corrected by how often each reader is drawn. Readers
    who also clicked i_b (or are r_b again) are not negatives."""
    logits = softmax.weight(torch.from_numpy(items)) @ e_u.T  # (B items, B readers); the item bias cancels
    logits = logits - torch.from_numpy(reader_log_q[readers]).float()[None, :]
    keys = readers[None, :].astype(np.int64) * n_items + items[:, None]
    at = np.minimum(np.searchsorted(clicked_keys, keys), len(clicked_keys) - 1)  # clicked_keys is sorted
    excluded = (clicked_keys[at] == keys) | (readers[None, :] == readers[:, None])
    np.fill_diagonal(excluded, False)
    logits = logits.masked_fill(torch.from_numpy(excluded), float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(items)))


def _validate(result: Stage1Result, hists, val_reader, val_item, val_negs) -> float:
    if len(val_reader) == 0:
        return 0.0
    tower, softmax = result.tower, result.softmax
    tower.eval()
    wins = np.zeros(len(val_reader))
    with torch.no_grad():
        # In slices: one batch of every reader's field embeddings takes gigabytes at 50,000 readers.
        for s in range(0, len(val_reader), 4096):
            readers = val_reader[s:s + 4096]
            e_u, _ = tower(_to_torch(result.builder.batch(readers, [hists[r] for r in readers])))
            pos = softmax.logits(e_u, torch.from_numpy(val_item[s:s + 4096, None])).numpy()  # (B, 1)
            neg = softmax.logits(e_u, torch.from_numpy(val_negs[s:s + 4096])).numpy()  # (B, N)
            wins[s:s + 4096] = (neg < pos).mean(1) + 0.5 * (neg == pos).mean(1)
    return float(wins.mean())
