"""The ranker's arms: each a name with what it ranks by and its parameters. Settings
(FEED_ARM), the pages and the API (`arm=`), the simulator, `ab_report` and the dashboard
all name arms from this registry, and `arm()` / `arms()` are the one place that checks a
name.

  ctr      the CTR model alone (a blend at w = 0): the reference the others are compared with
  blend    (1 - w) * CTR + w * similarity, within a CTR budget: the page keeps at least
           (1 - budget) of the clicks the CTR model expects of the ctr page (recsys.ranker)
  feature  the CTR model that reads the similarity's parts as inputs, each with a weight learned
           from the logged impressions: RALM's logit (where RALM scored the story), whether
           it did, and the cold-start model's logit; RALM's terms stay only with a positive
           weight that lowers the held-out log loss (recsys.ctr.fit_learned). Served by
           `blend` when the training could not fit it
  noralm   the ablation of `feature`: the same model fitted on the same impressions without
           RALM's terms, so its similarity comes from the cold-start model alone (served by
           `blend` when the training could not fit it)
  gate     recall keeps the candidates with similarity >= threshold (topped up by the most
           similar of the rest), then CTR ranks them: the paper's exposure gate
  explore  `feature` with an exploration budget: a page holds at least `explore` cold stories
           that have not yet had the exposure a story needs to find its seeds, the best of
           them by the arm's score (recsys.ranker.explored)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

KINDS = ("blend", "feature", "gate")


class UnknownArm(ValueError):
    """A name that is not in the registry, or an arm named twice."""


@dataclass(frozen=True)
class Arm:
    name: str
    kind: str  # one of KINDS
    weight: float = 0.0  # blend: w of the similarity
    budget: float = 0.0  # blend: the share of the ctr page's expected clicks it may give up (0: no limit)
    budget_steps: int = 4  # blend: halvings of w tried before w = 0
    threshold: float = 0.0  # gate: the least similarity a candidate needs
    fallback: str | None = None  # the arm that serves when this one's model is missing
    ralm: bool = True  # feature: its model reads RALM's terms (recsys.ctr.FEATURE_COLUMNS), else not (NORALM_COLUMNS)
    per_group: int = 2  # stories of one subcategory on a page
    repeat_discount: float = 0.5  # a story shown to the reader recently scores this much per showing
    explore: int = 0  # cold stories a page holds at least (the best of them by the arm's score), when there are any

    def __post_init__(self) -> None:
        assert self.kind in KINDS, f"arm {self.name}: kind must be one of {KINDS}"
        assert 0.0 <= self.weight <= 1.0, f"arm {self.name}: weight must be within [0, 1]"
        assert 0.0 <= self.budget < 1.0, f"arm {self.name}: budget must be within [0, 1)"
        assert self.budget_steps >= 0 and self.per_group >= 1, f"arm {self.name}: bad budget_steps or per_group"
        assert 0.0 < self.repeat_discount <= 1.0, f"arm {self.name}: repeat_discount must be within (0, 1]"
        assert self.explore >= 0, f"arm {self.name}: explore must not be negative"
        assert self.kind != "feature" or self.fallback, f"arm {self.name}: a feature arm needs a fallback"


ARMS: dict[str, Arm] = {a.name: a for a in (
    Arm("ctr", "blend"),
    Arm("blend", "blend", weight=0.05, budget=0.01),
    Arm("feature", "feature", fallback="blend"),
    Arm("noralm", "feature", fallback="blend", ralm=False),
    Arm("gate", "gate", threshold=0.02),
    Arm("explore", "feature", fallback="blend", explore=5),
)}
assert all(a.fallback in (None, *ARMS) for a in ARMS.values())
# An arm's ablation: the arm that scores as it does without RALM's terms (what RALM adds is
# the difference between the two; bench/audience.py measures it against the truth).
ABLATIONS: dict[str, str] = {"feature": "noralm"}
assert all(k in ARMS and v in ARMS and not ARMS[v].ralm for k, v in ABLATIONS.items())
REFERENCE = "ctr"  # what A/B comparisons measure the other arms against
DEFAULT_ARM = "feature"  # the arm the feed serves unless FEED_ARM says otherwise (webapp/settings.py)


def arm(name: str) -> Arm:
    """The registered arm of that name; UnknownArm (a ValueError naming the choices) if none."""
    try:
        return ARMS[name]
    except KeyError:
        raise UnknownArm(f"unknown ranker arm {name!r} (one of {', '.join(ARMS)})") from None


def arms(names: str | Iterable[str]) -> list[Arm]:
    """The arms of a comma-separated list (or of a list of names), in order; UnknownArm for an
    unknown name or one named twice (their pages would pool under one label)."""
    names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    names = [n for n in names if n]
    if len(set(names)) < len(names):
        raise UnknownArm(f"an arm named twice in {','.join(names)!r}")
    return [arm(n) for n in names]
