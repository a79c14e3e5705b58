"""Seed sets, per-item look-alike state and model runs (the durable copy; Redis serves)."""

from __future__ import annotations

import numpy as np
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.utils import timezone

from recsys.serving import ItemState
from webapp.news.models import Item


class ModelKind(models.TextChoices):
    USER_TOWER = "user_tower", "Stage 1: user tower"
    LOOKALIKE = "lookalike", "Stage 2: look-alike model"
    COLDSTART = "coldstart", "Cold-start linear model"
    CTR = "ctr", "CTR model"


class ModelRun(models.Model):
    """One training run of one model. At most one run per kind is active (serving)."""

    kind = models.CharField(max_length=16, choices=ModelKind.choices)
    version = models.CharField(max_length=64)
    config = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    artifact_path = models.CharField(max_length=500, blank=True)
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "version"], name="modelrun_kind_version_uniq"),
            models.UniqueConstraint(
                fields=["kind"], condition=Q(is_active=True), name="modelrun_one_active_per_kind"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.version}{' (active)' if self.is_active else ''}"


class SeedSet(models.Model):
    """An item's seed readers: its latest clickers that have a reader vector, latest first."""

    item = models.OneToOneField(Item, on_delete=models.CASCADE, related_name="seed_set")
    seed_reader_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    # Each seed's latest click, in the order of seed_reader_ids: what the refresh merges the
    # clicks since its last run into (SeedDelta) without reading the item's clicks again.
    seed_clicked_at = ArrayField(models.DateTimeField(), default=list, blank=True)
    count = models.PositiveIntegerField(default=0)
    # The next refresh recomputes the seeds from the click table instead of merging deltas:
    # a new set (its earlier clicks may predate the deltas), a set whose clicks were deleted.
    rebuild = models.BooleanField(default=True)
    # Seeds that entered or left the list since the item's state was computed: a state whose
    # seeds changed by a small share is re-clustered from its previous centroids.
    seeds_changed = models.PositiveIntegerField(default=0)
    # Set by a click, cleared by the refresh job once the seeds are rebuilt.
    dirty = models.BooleanField(default=True)
    # Set when the seeds changed, cleared once the item's look-alike state is recomputed.
    state_dirty = models.BooleanField(default=False)
    # Since when a click waits for the refresh to reach the served state: set by the first
    # click that finds the set clean, cleared once the state is recomputed (the refresh lag
    # the metrics report is the oldest of these).
    dirty_since = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["item"], condition=Q(dirty=True), name="seedset_dirty_idx"),
            models.Index(fields=["item"], condition=Q(state_dirty=True), name="seedset_state_dirty_idx"),
            models.Index(fields=["dirty_since"], condition=Q(dirty_since__isnull=False),
                         name="seedset_dirty_since_idx"),
        ]

    def __str__(self) -> str:
        return f"seeds of item {self.item_id}: {self.count}{' (dirty)' if self.dirty else ''}"


class SeedDelta(models.Model):
    """A reader's latest click on an item not yet merged into the item's seed list. A
    trigger on news_click writes one row per (item, reader) and statement, in the writer's
    own transaction (as news.ItemCountDelta's do); the seed refresh takes the rows of its
    items whose reader has a vector, so a row whose reader has none yet waits for it."""

    item_id = models.BigIntegerField()  # no foreign key: the click's hot path pays no check
    reader_id = models.BigIntegerField()
    clicked_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["item_id"], name="seeddelta_item_idx")]

    def __str__(self) -> str:
        return f"item {self.item_id}: reader {self.reader_id} at {self.clicked_at:%H:%M:%S}"


class LookalikeState(models.Model):
    """An item's k seed centroids and global embedding under one stage-2 model run.
    Arrays are little-endian float32 bytes: centroids (k, dim), global embedding (dim,)."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="lookalike_states")
    model_run = models.ForeignKey(ModelRun, on_delete=models.CASCADE, related_name="states")
    k = models.PositiveSmallIntegerField()
    dim = models.PositiveSmallIntegerField()
    centroids = models.BinaryField()
    cluster_sizes = ArrayField(models.PositiveIntegerField(), default=list, blank=True)
    global_embedding = models.BinaryField()
    seed_count = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "model_run"], name="state_item_run_uniq")
        ]

    def __str__(self) -> str:
        return f"state of item {self.item_id} under run {self.model_run_id}"

    # The fields `state_from` decodes, in its order (for `values_list`).
    STATE_FIELDS = ("k", "dim", "centroids", "cluster_sizes", "global_embedding")

    @staticmethod
    def state_from(k: int, dim: int, centroids: bytes | memoryview, cluster_sizes: list[int],
                   global_embedding: bytes | memoryview) -> ItemState:
        """The ItemState of a row's `STATE_FIELDS` as the database returns them."""
        return ItemState(np.frombuffer(bytes(centroids), "<f4").reshape(k, dim), np.asarray(cluster_sizes, np.float32),
                         np.frombuffer(bytes(global_embedding), "<f4"))

    @property
    def item_state(self) -> ItemState:
        return self.state_from(*(getattr(self, f) for f in self.STATE_FIELDS))


class ReaderVector(models.Model):
    """A reader's E_u under one user-tower run (the durable copy; Redis serves it).
    `vector` is little-endian float32 bytes of length `dim`."""

    reader = models.ForeignKey("news.Reader", on_delete=models.CASCADE, related_name="vectors")
    model_run = models.ForeignKey(ModelRun, on_delete=models.CASCADE, related_name="reader_vectors")
    dim = models.PositiveSmallIntegerField()
    vector = models.BinaryField()
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["reader", "model_run"], name="readervector_reader_run_uniq")
        ]

    def __str__(self) -> str:
        return f"E_u of reader {self.reader_id} under run {self.model_run_id}"

    @staticmethod
    def vector_from(raw: bytes | memoryview) -> np.ndarray:
        """A `vector` as the database returns it, decoded: E_u (dim,) float32."""
        return np.frombuffer(bytes(raw), "<f4")

    @property
    def e_u(self) -> np.ndarray:
        return self.vector_from(self.vector)
