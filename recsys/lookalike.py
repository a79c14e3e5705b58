"""Stage 2: the look-alike model. A target reader's E_u and an item's seed clusters (k-means
centroids of the seeds' transformed vectors) are compared through a global, target-independent
attention and a local, target-aware attention:

    f(x)     = PReLU(W x + b)                          shared by both towers
    E_global = sum_j a_g[j] c_j,  a_g = softmax(w_g^T tanh(W_g c_j) + log n_j)
    E_local  = sum_j a_l[j] c_j,  a_l = softmax(tau * tanh(c_j^T W_l f(E_u)) + log n_j)
    sim      = alpha * cos(f(E_u), E_global) + beta * cos(f(E_u), E_local)
    P(click) = sigmoid(temperature * sim + bias)

Departures from the paper, on purpose:
- `+ log n_j` (n_j = seeds in cluster j): a centroid stands for n_j seeds, so with zero
  attention logits both pools are the plain seed average. The global attention starts there
  (v_g = 0); the local one starts leaning to the clusters nearest the target
  (W_l = (8/h) I, tau = 10), which training then adjusts. Started from zero or with a soft
  lean, training never found the target-aware weighting and ended as a seed average.
- Small seed sets get fewer clusters (about `min_cluster` seeds each, at most k): k-means of
  five readers into twenty "clusters" is five noisy single readers, and attending to the
  nearest one measured worse than the average; the paper's seed sets are millions.
- `tau`: tanh bounds the local logits to [-1, 1], which caps how much weight the closest
  cluster can get (about 0.28 of 20); a learned scale lets the attention sharpen.
- alpha, beta, the temperature and the bias are learned (initialised 0.3, 0.7, 5, base rate).
- `mode="mean"` replaces both attentions by the size-weighted average (the `ralm_avg`
  ablation), everything else unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class LookalikeConfig:
    dim: int = 64  # size of E_u and of the look-alike space (h)
    k: int = 20  # seed clusters per item, at most
    min_cluster: int = 20  # fewer clusters for small seed sets: about this many seeds per cluster
    global_dim: int = 32  # rows of W_g
    alpha: float = 0.3  # initial weight of the global similarity
    beta: float = 0.7  # initial weight of the local similarity
    tau: float = 10.0  # initial sharpness of the local attention
    local_init: float = 8.0  # W_l starts at (local_init / dim) * I: a lean to the nearest clusters
    temperature: float = 5.0  # initial logit scale of the similarity
    mode: str = "attention"  # "attention" (RALM) or "mean" (seeds averaged)

    def __post_init__(self) -> None:
        assert self.dim > 0 and self.k > 0 and self.global_dim > 0
        assert self.mode in ("attention", "mean")

    def to_dict(self) -> dict:
        return asdict(self)


class SharedTransform(nn.Module):
    """f(x) = PReLU(W x + b), initialised to the identity (so no training = no change)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        self.act = nn.PReLU(num_parameters=1, init=1.0)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(dim))
            self.linear.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.linear(x))


def _masked_softmax(logits: torch.Tensor, sizes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    logits = logits + torch.log(sizes.clamp(min=1.0))
    return torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)


class GlobalAttention(nn.Module):
    """Target-independent pooling of an item's centroids: (B, k, h) -> (B, h), weights (B, k)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w_g = nn.Linear(dim, hidden, bias=False)
        self.v_g = nn.Linear(hidden, 1, bias=False)
        nn.init.zeros_(self.v_g.weight)  # start as the seed average

    def forward(self, cents, sizes, mask):
        logits = self.v_g(torch.tanh(self.w_g(cents))).squeeze(-1)  # (B, k)
        a = _masked_softmax(logits, sizes, mask)
        return torch.einsum("bk,bkh->bh", a, cents), a


class LocalAttention(nn.Module):
    """Target-aware pooling: weights from tanh(c_j^T W_l t), sharpened by tau."""

    def __init__(self, dim: int, tau: float, init: float = 0.0) -> None:
        super().__init__()
        self.w_l = nn.Parameter(torch.eye(dim) * (init / dim))  # 0: start as the seed average
        self.tau = nn.Parameter(torch.tensor(float(tau)))

    def forward(self, cents, sizes, mask, target):
        logits = self.tau * torch.tanh(torch.einsum("bkh,hd,bd->bk", cents, self.w_l, target))  # (B, k)
        a = _masked_softmax(logits, sizes, mask)
        return torch.einsum("bk,bkh->bh", a, cents), a


class LookalikeModel(nn.Module):
    def __init__(self, config: LookalikeConfig, base_rate: float = 0.2) -> None:
        super().__init__()
        self.config = config
        self.transform = SharedTransform(config.dim)
        self.global_attn = GlobalAttention(config.dim, config.global_dim)
        self.local_attn = LocalAttention(config.dim, config.tau, config.local_init)
        self.alpha = nn.Parameter(torch.tensor(config.alpha))
        self.beta = nn.Parameter(torch.tensor(config.beta))
        self.temperature = nn.Parameter(torch.tensor(config.temperature))
        p = min(max(base_rate, 1e-4), 1 - 1e-4)
        self.bias = nn.Parameter(torch.tensor(float(torch.logit(torch.tensor(p)))))

    def scalars(self) -> list[nn.Parameter]:
        return [self.alpha, self.beta, self.temperature, self.bias, self.local_attn.tau]

    def pool(self, cents, sizes, mask, target=None):
        """E_global (B, h) and, given a transformed target (B, h), E_local (B, h)."""
        if self.config.mode == "mean":
            a = _masked_softmax(torch.zeros_like(sizes), sizes, mask)
            mean = torch.einsum("bk,bkh->bh", a, cents)
            return mean, mean
        e_global, _ = self.global_attn(cents, sizes, mask)
        e_local = None if target is None else self.local_attn(cents, sizes, mask, target)[0]
        return e_global, e_local

    def forward(self, e_u, cents, sizes, mask):
        """e_u (B, h) raw reader vectors; cents (B, k, h) centroids in the look-alike space,
        padded; sizes (B, k) seeds per centroid; mask (B, k) real centroids. -> logits (B,).
        A row with no centroid at all gets sim 0."""
        target = self.transform(e_u)  # (B, h)
        safe = mask | ~mask.any(-1, keepdim=True)  # keep softmax finite on empty rows
        e_global, e_local = self.pool(cents, sizes, safe, target)
        sim = self.alpha * F.cosine_similarity(target, e_global, dim=-1, eps=1e-8) + \
            self.beta * F.cosine_similarity(target, e_local, dim=-1, eps=1e-8)
        sim = torch.where(mask.any(-1), sim, torch.zeros_like(sim))
        return self.temperature * sim + self.bias
