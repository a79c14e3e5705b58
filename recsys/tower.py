"""Stage 1: the user tower. One embedding per feature field, an attention merge layer, an MLP
whose last layer is the reader vector E_u; trained with a sampled softmax over items."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class TowerConfig:
    fields: dict[str, int] = field(default_factory=dict)  # field name -> vocabulary size (row 0 = pad)
    n_items: int = 1  # output classes of the sampled softmax
    dim: int = 64  # size of E_u (h)
    field_dim: int = 64  # size of each field embedding (m)
    attn_dim: int = 32  # hidden size of the attention merge (k in W1 in R^{k x m})
    hidden: int = 128  # MLP hidden layer
    dropout: float = 0.2  # on the MLP
    max_history: int = 50  # latest clicks fed to the item-based fields

    def __post_init__(self) -> None:
        assert self.fields and all(v >= 1 for v in self.fields.values()), "need at least one field"
        assert self.dim > 0 and self.field_dim > 0 and self.attn_dim > 0 and 0 <= self.dropout < 1

    def to_dict(self) -> dict:
        return asdict(self)


class AttentionMerge(nn.Module):
    """Merge n field embeddings H (B, n, m) into one M (B, m) with learned field weights:
    U = tanh(H W1^T), a = softmax(U w2) over the present fields, M = a^T H."""

    def __init__(self, m: int, k: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(m, k, bias=False)
        self.w2 = nn.Linear(k, 1, bias=False)

    def forward(self, h: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.w2(torch.tanh(self.w1(h))).squeeze(-1)  # (B, n)
        logits = logits.masked_fill(~present, float("-inf"))
        a = torch.softmax(logits, dim=-1)  # (B, n); the constant field is always present
        return torch.einsum("bn,bnm->bm", a, h), a


class UserTower(nn.Module):
    """Fields -> E_u. Multi-valued fields are average-pooled over their non-padding values;
    a field with no values is left out of the merge. A learned constant field is always
    present, so a reader with no features still gets a (population-average) vector."""

    def __init__(self, config: TowerConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.names = sorted(c.fields)
        # A bag per field: the mean over a row's non-padding values without building (B, L, m).
        self.embed = nn.ModuleDict({n: nn.EmbeddingBag(v, c.field_dim, mode="mean", padding_idx=0)
                                    for n, v in c.fields.items()})
        self.constant = nn.Parameter(torch.zeros(c.field_dim))
        self.merge = AttentionMerge(c.field_dim, c.attn_dim)
        self.mlp = nn.Sequential(
            nn.Linear(c.field_dim, c.hidden), nn.ReLU(), nn.Dropout(c.dropout), nn.Linear(c.hidden, c.dim)
        )
        for emb in self.embed.values():
            nn.init.normal_(emb.weight, std=0.1)
            with torch.no_grad():
                emb.weight[0].zero_()

    def field_embeddings(self, fields: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(H (B, n+1, m), present (B, n+1)); the last field is the constant one."""
        pooled, present = [], []
        for name in self.names:
            idx = fields[name]  # (B, L)
            pooled.append(self.embed[name](idx))  # (B, m); a row of padding only gives zeros
            present.append((idx > 0).any(1))
        batch = pooled[0].shape[0]
        pooled.append(self.constant.expand(batch, -1))
        present.append(torch.ones(batch, dtype=torch.bool))
        return torch.stack(pooled, 1), torch.stack(present, 1)

    def forward(self, fields: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns E_u (B, dim) and the field attention weights (B, n_fields + 1)."""
        h, present = self.field_embeddings(fields)
        merged, weights = self.merge(h, present)
        return self.mlp(merged), weights


class ItemSoftmax(nn.Module):
    """Output item embeddings and biases of the sampled softmax (not tied to the input
    `items` field: tying them stalled training in a prototype)."""

    def __init__(self, n_items: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Embedding(n_items, dim)
        self.bias = nn.Embedding(n_items, 1)
        nn.init.normal_(self.weight.weight, std=1.0 / math.sqrt(dim))
        nn.init.zeros_(self.bias.weight)

    def logits(self, e_u: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """e_u (B, h), items (B, C) -> (B, C)."""
        return torch.einsum("bh,bch->bc", e_u, self.weight(items)) + self.bias(items).squeeze(-1)


def sampled_softmax_loss(
    logits: torch.Tensor, log_q: torch.Tensor, accidental: torch.Tensor
) -> torch.Tensor:
    """Column 0 is the positive. `log_q` (B, C) is log of each candidate's expected count
    under the sampler (the correction of Jean et al., 2015); `accidental` (B, C) marks
    negatives equal to the positive, which are removed."""
    corrected = (logits - log_q).masked_fill(accidental, float("-inf"))
    return F.cross_entropy(corrected, torch.zeros(len(logits), dtype=torch.long))
