"""Readers, stories, and the interaction log (impressions and clicks)."""

from __future__ import annotations

import numpy as np
from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Source(models.TextChoices):
    DEMO = "demo", "Demo corpus"
    MIND = "mind", "MIND import"
    MOVIELENS = "movielens", "MovieLens import"
    WEB = "web", "Created on the web"


class Reader(models.Model):
    """A person reading the feed. Demo readers carry a simulated profile; their hidden
    interests stay in fixtures/readers.jsonl, so no model can peek at the truth."""

    source = models.CharField(max_length=16, choices=Source.choices, default=Source.DEMO)
    external_id = models.CharField(max_length=64)
    name = models.CharField(max_length=120)
    region = models.CharField(max_length=64, blank=True)
    age_band = models.CharField(max_length=16, blank=True)
    device = models.CharField(max_length=16, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Web readers: the account that keeps them (none while they read as a browser session),
    # and the topics (categories) they picked; both feed their vector (recsys.online).
    user = models.OneToOneField(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="reader")
    topics = ArrayField(models.CharField(max_length=64), default=list, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "external_id"], name="reader_source_ext_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.source}:{self.external_id})"


class ItemStatus(models.TextChoices):
    COLD = "cold", "Cold (scored by the cold-start model)"
    WARM = "warm", "Warm (scored by RALM)"


class Item(models.Model):
    """A story (or, for MovieLens, a movie). `published_at` is null while a story is held
    back; it becomes a feed candidate once published."""

    source = models.CharField(max_length=16, choices=Source.choices, default=Source.DEMO)
    external_id = models.CharField(max_length=64)
    title = models.CharField(max_length=500)
    abstract = models.TextField(blank=True)
    category = models.CharField(max_length=64, db_index=True)
    subcategory = models.CharField(max_length=128, blank=True)
    url = models.URLField(max_length=500, blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=8, choices=ItemStatus.choices, default=ItemStatus.COLD)
    warm_since = models.DateTimeField(null=True, blank=True, help_text="when the item last turned warm")
    # Exponentially decayed click count, refreshed by a periodic job (baseline ranker input).
    popularity = models.FloatField(default=0.0)
    # Impressions and clicks so far (the CTR model's smoothed item CTR), refreshed with popularity.
    shown_count = models.PositiveIntegerField(default=0)
    click_count = models.PositiveIntegerField(default=0)
    # all-MiniLM-L6-v2 vector of the title and abstract: 384 little-endian float32, unit length.
    text_vector = models.BinaryField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "external_id"], name="item_source_ext_uniq")
        ]
        indexes = [
            models.Index(
                fields=["-published_at"],
                name="item_live_recent_idx",
                condition=Q(published_at__isnull=False),
            ),
            models.Index(fields=["id"], name="item_needs_vector_idx", condition=Q(text_vector__isnull=True)),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def is_live(self) -> bool:
        return self.published_at is not None and self.published_at <= timezone.now()

    @staticmethod
    def vector_from(raw: bytes | memoryview) -> np.ndarray:
        """A `text_vector` as the database returns it, decoded: (384,) float32."""
        return np.frombuffer(bytes(raw), "<f4")

    @property
    def text_array(self) -> np.ndarray | None:
        """The text vector decoded; None while the item has none."""
        return None if self.text_vector is None else self.vector_from(self.text_vector)


class Impression(models.Model):
    """One item shown to one reader in one feed response, with what ranked it there."""

    reader = models.ForeignKey(Reader, on_delete=models.CASCADE, related_name="impressions", db_index=False)
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="impressions", db_index=False)
    request_id = models.CharField(max_length=64)
    position = models.PositiveSmallIntegerField()
    shown_at = models.DateTimeField(default=timezone.now)
    # The ranker arm that served the page (recsys.arms), "baseline" before a model is trained,
    # "logged" for imported impressions.
    arm = models.CharField(max_length=16, default="baseline")
    # The client the page was shown to (webapp.feed.clients); "" for a history written in
    # bulk, an import or the in-process simulator: anyone may click those.
    client = models.CharField(max_length=24, blank=True, default="", db_default="")
    score = models.FloatField(default=0.0)
    score_parts = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["request_id", "item"], name="impression_request_item_uniq")
        ]
        # The (reader, time) and (item, time) indexes serve every lookup by reader or item
        # (the foreign keys' own single-column indexes would only slow the feed's insert).
        indexes = [
            # "recent impressions of a reader"
            models.Index(fields=["reader", "-shown_at"], name="impression_reader_recent_idx"),
            models.Index(fields=["item", "-shown_at"], name="impression_item_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"impression {self.pk}: reader {self.reader_id} item {self.item_id} @{self.position}"


class ItemCountDelta(models.Model):
    """Impressions and clicks of an item not yet added into Item.shown_count and click_count.
    Triggers on news_impression and news_click write one row per item and statement (a
    feed page, a click, a COPY of a history; minus rows for deletes), in the writer's own
    transaction; the minute's counts job (webapp.news.services.item_counts_refresh) adds them
    in and deletes them. Its cost follows the traffic since the last run, not the history."""

    item_id = models.BigIntegerField()  # no foreign key: the writers' hot path pays no check
    shown = models.IntegerField(default=0)
    clicked = models.IntegerField(default=0)

    def __str__(self) -> str:
        return f"item {self.item_id}: {self.shown:+} shown, {self.clicked:+} clicked"


class Click(models.Model):
    """A click. Web clicks belong to an impression (at most one click per impression);
    imported history clicks have none and are unique per (reader, item, time)."""

    reader = models.ForeignKey(Reader, on_delete=models.CASCADE, related_name="clicks", db_index=False)
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="clicks", db_index=False)
    impression = models.OneToOneField(
        Impression, null=True, blank=True, on_delete=models.SET_NULL, related_name="click"
    )
    clicked_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["reader", "item", "clicked_at"],
                condition=Q(impression__isnull=True),
                name="click_history_uniq",
            )
        ]
        indexes = [  # they also serve every lookup by reader or item (no single-column index on the keys)
            # "recent clicks of an item" (seed refresh) and of a reader (profiles)
            models.Index(fields=["item", "-clicked_at"], name="click_item_recent_idx"),
            models.Index(fields=["reader", "-clicked_at"], name="click_reader_recent_idx"),
            # "the clicks of the last hours" (popularity): its cost follows the window, not the history
            models.Index(fields=["clicked_at"], name="click_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"click {self.pk}: reader {self.reader_id} item {self.item_id}"
