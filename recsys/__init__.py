"""RALM Feed's machine-learning library: pure numpy / torch / scikit-learn, no web code.

The surface the web side and the benchmarks use:
- the ranker's entry point `rank` (its inputs are in recsys.ranker) and `Ranking`, for an `Arm`
  of the registry (`ARMS`, `arm`, `arms`);
- the A/B statistics: `ab_summary`, `ab_compare`, `ab_within_readers`, `PairedPages`,
  `tail_mask`, `head_items`, `arm_label`, `was_cold`;
- the reader features both models read: `reader_profiles`, `category_affinity`, `freshness`.
Training (recsys.stage1, recsys.stage2, recsys.hybrid, recsys.ctr), artifacts
(recsys.artifacts), serving (recsys.serving, recsys.online) and the replay evaluation
(`python -m recsys.evaluate`) are imported from their modules: they bring torch.
"""

from recsys.abtest import (
    PairedPages,
    ab_compare,
    ab_summary,
    ab_within_readers,
    arm_label,
    head_items,
    tail_mask,
    was_cold,
)
from recsys.arms import ARMS, REFERENCE, Arm, UnknownArm, arm, arms
from recsys.profiles import Profiles, category_affinity, freshness, reader_profiles
from recsys.ranker import Ranking, rank

__all__ = [
    "ARMS", "REFERENCE", "Arm", "PairedPages", "Profiles", "Ranking", "UnknownArm", "ab_compare", "ab_summary",
    "ab_within_readers", "arm", "arm_label", "arms", "category_affinity", "freshness", "head_items", "rank",
    "reader_profiles", "tail_mask", "was_cold",
]
