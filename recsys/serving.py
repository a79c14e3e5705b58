"""The online scorer, in numpy: what the feed runs per request.

From one reader vector E_u and a batch of candidates' padded centroids (with masks and seed
counts) and precomputed E_global, the look-alike logits of all candidates at once. It mirrors
LookalikeModel.forward exactly (a test holds them within 1e-5); cost O(C * k * h).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.clustering import batched_kmeans, cluster_seeds, clusters_for

EPS = 1e-8


def _softmax_sized(logits: np.ndarray, sizes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    logits = np.where(mask, logits + np.log(np.maximum(sizes, 1.0)), -np.inf)
    logits = logits - logits.max(-1, keepdims=True)
    w = np.exp(logits)
    return w / w.sum(-1, keepdims=True)


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na = np.maximum(np.linalg.norm(a, axis=-1), EPS)
    nb = np.maximum(np.linalg.norm(b, axis=-1), EPS)
    return (a * b).sum(-1) / (na * nb)


@dataclass(frozen=True)
class ItemState:
    centroids: np.ndarray  # (k_i, h) in the look-alike space
    sizes: np.ndarray  # (k_i,) seeds per centroid
    e_global: np.ndarray  # (h,)


def padded_chunks(ids: list[int], lengths: list[int], *, width: int, floats: int) -> list[list[int]]:
    """`ids` in chunks for padded batches: ordered by length, each chunk as many as keep
    (ids x its longest length x width) within `floats` (a longer one alone), so a chunk of
    short seed sets never pads to a long one's size."""
    order = np.argsort(np.asarray(lengths, np.int64), kind="stable")
    n = np.asarray(lengths, np.int64)[order]
    out, start = [], 0
    while start < len(order):
        # The chunk is padded to its last (longest) member.
        fits = np.arange(1, len(order) - start + 1) * n[start:] * width <= floats
        size = max(1, int(fits.sum()))
        out.append([ids[k] for k in order[start:start + size]])
        start += size
    return out


@dataclass
class LookalikeScorer:
    """The trained stage-2 weights as numpy arrays."""

    w: np.ndarray  # (h, h)
    b: np.ndarray  # (h,)
    slope: float  # PReLU
    w_g: np.ndarray  # (d, h)
    v_g: np.ndarray  # (d,)
    w_l: np.ndarray  # (h, h)
    tau: float
    alpha: float
    beta: float
    temperature: float
    bias: float
    k: int
    min_cluster: int = 1
    mode: str = "attention"

    @classmethod
    def from_model(cls, model) -> LookalikeScorer:
        """From a recsys.lookalike.LookalikeModel (duck-typed: no torch import needed here)."""
        t = lambda p: p.detach().cpu().numpy().astype(np.float64)  # noqa: E731
        return cls(
            w=t(model.transform.linear.weight), b=t(model.transform.linear.bias),
            slope=float(t(model.transform.act.weight).reshape(-1)[0]),
            w_g=t(model.global_attn.w_g.weight), v_g=t(model.global_attn.v_g.weight).reshape(-1),
            w_l=t(model.local_attn.w_l), tau=float(t(model.local_attn.tau)), alpha=float(t(model.alpha)),
            beta=float(t(model.beta)), temperature=float(t(model.temperature)), bias=float(t(model.bias)),
            k=model.config.k, min_cluster=model.config.min_cluster, mode=model.config.mode,
        )

    @property
    def dim(self) -> int:
        return self.w.shape[0]

    def transform(self, x: np.ndarray) -> np.ndarray:
        """f(x) = PReLU(W x + b) for x (..., h)."""
        z = x @ self.w.T + self.b
        return np.where(z >= 0, z, self.slope * z)

    def global_embedding(self, cents: np.ndarray, sizes: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(C, k, h), (C, k), (C, k) -> E_global (C, h)."""
        safe = mask | ~mask.any(-1, keepdims=True)
        if self.mode == "mean":
            logits = np.zeros(sizes.shape)
        else:
            logits = np.tanh(cents @ self.w_g.T) @ self.v_g  # (C, k)
        return np.einsum("ck,ckh->ch", _softmax_sized(logits, sizes, safe), cents)

    def item_state(self, seed_vectors: np.ndarray, *, random_state: int = 0) -> ItemState:
        """Cluster an item's seeds (raw E_u, (n, h)) and precompute its E_global."""
        cents, sizes = cluster_seeds(self.transform(seed_vectors), self.k, min_size=self.min_cluster,
                                     random_state=random_state)
        if len(sizes) == 0:
            return ItemState(cents, sizes, np.zeros(self.dim, np.float32))
        e_global = self.global_embedding(cents[None].astype(np.float64), sizes[None], np.ones((1, len(sizes)), bool))
        return ItemState(cents, sizes, e_global[0].astype(np.float32))

    def item_states(self, seed_sets: list[np.ndarray], *, matrix: np.ndarray | None = None, seed: int = 0,
                    chunk_floats: int = 8_000_000, init: list[np.ndarray | None] | None = None,
                    warm_iters: int = 5) -> list[ItemState]:
        """The states of many items at once: seed_sets[i] holds item i's seeds' raw E_u
        (n_i, h); or, given `matrix` (U, h) of seeds' transformed vectors f(E_u), row indices
        into it (so that millions of seed references are never copied at once). Items are
        clustered in batches (recsys.clustering.batched_kmeans), sorted by size so that
        little padding is wasted. `init[i]`: item i's previous centroids (c, h), where its
        seeds changed little: k-means starts there and runs at most `warm_iters` iterations,
        when c is still the number of clusters its seeds get; otherwise it starts afresh."""
        out: list[ItemState | None] = [None] * len(seed_sets)
        empty = ItemState(np.zeros((0, self.dim), np.float32), np.zeros(0, np.float32), np.zeros(self.dim, np.float32))
        for i, s in enumerate(seed_sets):
            if not len(s):
                out[i] = empty
        warm = [i for i, s in enumerate(seed_sets) if len(s) and init is not None and init[i] is not None
                and self.mode != "mean" and len(init[i]) == clusters_for(len(s), self.k, self.min_cluster)]
        fresh = sorted(set(i for i, s in enumerate(seed_sets) if len(s)) - set(warm))
        for group, starts in ((warm, init), (fresh, None)):
            for idx in padded_chunks(group, [len(seed_sets[i]) for i in group], width=self.dim,
                                     floats=chunk_floats):
                for i, state in zip(idx, self._states_chunk([seed_sets[i] for i in idx], matrix=matrix, seed=seed,
                                                            init=[starts[i] for i in idx] if starts else None,
                                                            iters=warm_iters), strict=True):
                    out[i] = state
        return out

    def _states_chunk(self, seed_sets: list[np.ndarray], *, matrix: np.ndarray | None, seed: int,
                      init: list[np.ndarray] | None, iters: int) -> list[ItemState]:
        """`item_states` of one batch of non-empty seed sets."""
        n_max = max(len(s) for s in seed_sets)
        x = np.zeros((len(seed_sets), n_max, self.dim), np.float32)
        lengths = np.array([len(s) for s in seed_sets])
        for row, s in enumerate(seed_sets):
            x[row, : lengths[row]] = matrix[s] if matrix is not None else self.transform(np.asarray(s, np.float64))
        if self.mode == "mean":
            cents = (x.sum(1) / lengths[:, None])[:, None, :]
            sizes = lengths[:, None].astype(np.float32)
        else:
            wanted = np.array([clusters_for(n, self.k, self.min_cluster) for n in lengths])
            starts = None
            if init is not None:
                starts = np.zeros((len(seed_sets), int(wanted.max()), self.dim), np.float32)
                for row, c in enumerate(init):
                    starts[row, : len(c)] = c
            cents, sizes = batched_kmeans(x, lengths, wanted, seed=seed, init=starts,
                                          **({"iters": iters} if init is not None else {}))
        e_global = self.global_embedding(cents.astype(np.float64), sizes, sizes > 0)
        return [ItemState(cents[row][sizes[row] > 0].astype(np.float32), sizes[row][sizes[row] > 0].astype(np.float32),
                          e_global[row].astype(np.float32)) for row in range(len(seed_sets))]

    def score(self, e_u: np.ndarray, cents: np.ndarray, sizes: np.ndarray, mask: np.ndarray,
              e_global: np.ndarray) -> np.ndarray:
        """Logits for C candidates: e_u (h,), cents (C, k, h), sizes (C, k), mask (C, k),
        e_global (C, h) -> (C,). A candidate with no centroid scores sim 0."""
        e_u = np.asarray(e_u, dtype=np.float64)
        if e_u.shape != (self.dim,):
            raise ValueError(f"e_u must have shape ({self.dim},), got {e_u.shape}")
        c = len(cents)
        if cents.shape[0] != c or cents.ndim != 3 or cents.shape[2] != self.dim:
            raise ValueError(f"centroids must have shape (C, k, {self.dim}), got {cents.shape}")
        if sizes.shape != cents.shape[:2] or mask.shape != cents.shape[:2] or e_global.shape != (c, self.dim):
            raise ValueError("sizes and mask must be (C, k) and e_global (C, h)")
        return self.score_unchecked(e_u, cents.astype(np.float64), sizes, mask.astype(bool),
                                    e_global.astype(np.float64))

    def audience(self, e_u: np.ndarray, state: ItemState) -> np.ndarray:
        """Logits of R readers (E_u (R, h)) for one item: `score` turned around, the item's
        audience rather than a reader's page. A state without centroids scores sim 0."""
        target = self.transform(np.asarray(e_u, np.float64))  # (R, h)
        cents, sizes = state.centroids.astype(np.float64), np.asarray(state.sizes, np.float64)
        if len(sizes) == 0:
            return np.full(len(target), self.bias)
        e_global = np.broadcast_to(state.e_global.astype(np.float64), target.shape)
        if self.mode == "mean":
            e_local = e_global
        else:
            logits = self.tau * np.tanh(target @ self.w_l.T @ cents.T)  # (R, k)
            weights = _softmax_sized(logits, sizes[None], np.ones((1, len(sizes)), bool))
            e_local = weights @ cents
        sim = self.alpha * _cos(target, e_global) + self.beta * _cos(target, e_local)
        return self.temperature * sim + self.bias

    def local_weights(self, e_u: np.ndarray, cents: np.ndarray, sizes: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The local attention's weights over each candidate's centroids (C, k): which seed
        cluster decided the reader's score (the feed's "readers like you" line)."""
        target = self.transform(np.asarray(e_u, np.float64))
        safe = mask | ~mask.any(-1, keepdims=True)
        if self.mode == "mean":
            return _softmax_sized(np.zeros(sizes.shape), sizes, safe)
        return _softmax_sized(self.tau * np.tanh(cents @ (self.w_l @ target)), sizes, safe)

    def score_unchecked(self, e_u: np.ndarray, cents: np.ndarray, sizes: np.ndarray, mask: np.ndarray,
                        e_global: np.ndarray) -> np.ndarray:
        """`score` for arrays already in shape, unchecked: the feed's hot path, whose padded
        states are checked once when they are built. e_u (h,) float64, mask (C, k) bool. The
        (C, k, h) products run in the centroids' own dtype (float32 in the feed's serving
        copy: half the memory traffic, within 1e-6 of float64)."""
        target = self.transform(e_u)  # (h,)
        any_seed = mask.any(-1)
        safe = mask | ~any_seed[:, None]
        if self.mode == "mean":
            e_local = e_global
        else:
            query = (self.w_l @ target).astype(cents.dtype, copy=False)
            logits = self.tau * np.tanh(cents @ query)  # (C, k)
            e_local = np.einsum("ck,ckh->ch", _softmax_sized(logits, sizes, safe), cents)
        sim = self.alpha * _cos(target[None], e_global) + self.beta * _cos(target[None], e_local)
        sim = np.where(any_seed, sim, 0.0)
        return self.temperature * sim + self.bias
