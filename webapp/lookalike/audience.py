"""A story's audience against the simulated truth (recsys.audience), for the demo world:
every demo reader who has not clicked the story, ranked by the served RALM logit, by the
seeds' average E_u, by the untrained look-alikes and by the cold-start model, against what
the hidden click model says they want. Only the demo world has a truth; for other sources
nothing is measured."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings

from fixtures.corpus import click_model, load_readers
from recsys.artifacts import load_coldstart
from recsys.audience import cosine_rows, story_audience, summarise
from recsys.history import TruthMatrix
from recsys.profiles import reader_profiles
from recsys.serving import LookalikeScorer
from recsys.simulation import item_truth
from webapp.lookalike.models import LookalikeState, ModelKind, ModelRun, ReaderVector, SeedSet
from webapp.lookalike.refresh import scorer_for
from webapp.news.models import Click, Item, Reader, Source


@dataclass
class AudienceWorld:
    """The demo world's readers and stories as arrays, with the truth and every scorer's
    inputs, loaded once."""

    reader_ids: np.ndarray  # (R,) Reader pks
    reader_row: dict[int, int]
    item_ids: np.ndarray  # (I,) Item pks, published demo stories
    item_row: dict[int, int]
    truth: TruthMatrix
    clicked: np.ndarray  # (R, I) bool
    category: np.ndarray  # (I,) category index
    sub_counts: np.ndarray  # (R, S) clicks per subcategory
    item_sub: np.ndarray  # (I,) subcategory index
    affinity: np.ndarray  # (R, C)
    profiles: np.ndarray  # (R, 384) text profiles
    vectors: np.ndarray  # (I, 384) text vectors
    e_u: np.ndarray | None  # (R, h) under the active tower; None without one
    has_vector: np.ndarray  # (R,) bool
    scorer: LookalikeScorer | None
    lookalike_run: ModelRun | None
    coldstart: tuple[np.ndarray, float] | None

    @classmethod
    def load(cls, world: str | None = None) -> AudienceWorld | None:
        """None when the database holds no demo readers or stories. `world`: whose truth
        (default DEMO_WORLD)."""
        truth_of = {r.id: r.truth for r in load_readers()}
        model = click_model(world or settings.DEMO_WORLD)
        readers = [(pk, ext) for pk, ext in Reader.objects.filter(source=Source.DEMO).order_by("pk")
                   .values_list("pk", "external_id") if ext in truth_of]
        items = list(Item.objects.filter(source=Source.DEMO, published_at__isnull=False).order_by("pk")
                     .values_list("pk", "external_id", "category", "subcategory", "text_vector"))
        if not readers or not items:
            return None
        reader_ids = np.array([pk for pk, _ in readers])
        reader_row = {pk: n for n, pk in enumerate(reader_ids)}
        item_ids = np.array([i[0] for i in items])
        item_row = {pk: n for n, pk in enumerate(item_ids)}
        categories = sorted({i[2] for i in items})
        subs = sorted({(i[2], i[3]) for i in items})
        category = np.array([categories.index(i[2]) for i in items])
        item_sub = np.array([subs.index((i[2], i[3])) for i in items])
        truth = TruthMatrix.build(model, [truth_of[ext] for _, ext in readers],
                                  [item_truth(external_id=i[1], category=i[2], subcategory=i[3], config=model.config)
                                   for i in items])
        clicked = np.zeros((len(readers), len(items)), bool)
        histories: list[list[int]] = [[] for _ in readers]
        for r, i in Click.objects.filter(reader_id__in=reader_ids.tolist(), item_id__in=item_ids.tolist()) \
                .order_by("clicked_at", "pk").values_list("reader_id", "item_id"):
            clicked[reader_row[r], item_row[i]] = True
            histories[reader_row[r]].append(item_row[i])
        sub_counts = np.zeros((len(readers), len(subs)))
        for r, h in enumerate(histories):
            np.add.at(sub_counts[r], item_sub[h], 1.0)
        vectors = np.stack([Item.vector_from(i[4]) if i[4] is not None else np.zeros(384, np.float32)
                            for i in items])
        prof = reader_profiles(item_vectors=vectors, item_category=category, n_categories=len(categories),
                               histories=[np.array(h[-100:], np.int64) for h in histories])
        tower = ModelRun.objects.filter(kind=ModelKind.USER_TOWER, is_active=True).first()
        look = ModelRun.objects.filter(kind=ModelKind.LOOKALIKE, is_active=True).first()
        cold = ModelRun.objects.filter(kind=ModelKind.COLDSTART, is_active=True).first()
        e_u, has = None, np.zeros(len(readers), bool)
        if tower is not None:
            rows = ReaderVector.objects.filter(model_run=tower, reader_id__in=reader_ids.tolist()) \
                .values_list("reader_id", "vector")
            got = {pk: ReaderVector.vector_from(v) for pk, v in rows}
            if got:
                dim = len(next(iter(got.values())))
                e_u = np.zeros((len(readers), dim))
                for pk, v in got.items():
                    e_u[reader_row[pk]], has[reader_row[pk]] = v, True
        return cls(reader_ids=reader_ids, reader_row=reader_row, item_ids=item_ids, item_row=item_row, truth=truth,
                   clicked=clicked,
                   category=category, sub_counts=sub_counts, item_sub=item_sub, affinity=prof.category_affinity,
                   profiles=prof.vectors, vectors=vectors, e_u=e_u, has_vector=has,
                   scorer=scorer_for(look) if look is not None and look.artifact_path else None,
                   lookalike_run=look,
                   coldstart=load_coldstart(Path(cold.artifact_path))["model"].linear() if cold is not None else None)

    def story(self, item_id: int, *, state: LookalikeState | None = None,
              seed_ids: list[int] | None = None) -> tuple[int, dict[str, dict[str, float]]] | None:
        """(seed count, scorer -> {"rho", "auc"}) for one story over the demo readers who have
        not clicked it; None for a story outside the world."""
        if item_id not in self.item_row:
            return None
        i = self.item_row[item_id]
        if seed_ids is None:
            seeds = SeedSet.objects.filter(item_id=item_id).values_list("seed_reader_ids", flat=True).first()
            seed_ids = list(seeds or [])
        seed_rows = np.array([self.reader_row[s] for s in seed_ids if s in self.reader_row], np.int64)
        cand = np.flatnonzero(~self.clicked[:, i])
        cand = np.setdiff1d(cand, seed_rows)
        if len(cand) < 10:
            return None
        scores: dict[str, np.ndarray] = {
            "category_affinity": self.affinity[cand, self.category[i]].astype(np.float64),
            "category_truth": self.truth.category_term[cand, i],
        }
        if len(seed_rows):
            scores["click_profile"] = cosine_rows(self.sub_counts[cand], self.sub_counts[seed_rows].mean(0))
        if self.e_u is not None:
            with_vec = seed_rows[self.has_vector[seed_rows]]
            if len(with_vec):
                scores["seed_average"] = cosine_rows(self.e_u[cand], self.e_u[with_vec].mean(0))
            if self.scorer is not None:
                if state is None and self.lookalike_run is not None:
                    state = LookalikeState.objects.filter(item_id=item_id, model_run=self.lookalike_run).first()
                if state is not None:
                    scores["ralm"] = self.scorer.audience(self.e_u[cand], state.item_state)
        if self.coldstart is not None and np.any(self.vectors[i]):
            coef, intercept = self.coldstart
            d = self.vectors.shape[1]
            scores["coldstart"] = (self.profiles[cand] @ (self.vectors[i] * (coef[:d] + coef[d]))
                                   + coef[d + 1] * self.affinity[cand, self.category[i]] + intercept)
        return len(seed_ids), story_audience(self.truth.base[cand, i], scores)

    def all_stories(self) -> dict:
        """recsys.audience.summarise over every story with seeds, and the cold stories'
        cold-start figures in bucket "0"."""
        seeds = dict(SeedSet.objects.filter(item_id__in=self.item_ids.tolist())
                     .values_list("item_id", "seed_reader_ids"))
        states = {s.item_id: s for s in LookalikeState.objects.filter(model_run=self.lookalike_run)} \
            if self.lookalike_run is not None else {}
        per = []
        for item_id in self.item_ids.tolist():
            got = self.story(item_id, state=states.get(item_id), seed_ids=list(seeds.get(item_id) or []))
            if got is not None:
                per.append(got)
        return summarise(per)
