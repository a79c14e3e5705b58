from __future__ import annotations

from django.apps import AppConfig


class LookalikeConfig(AppConfig):
    """RALM's state: seed sets, look-alike states, reader vectors and model runs, with the
    training, the refresh and the serving store."""

    name = "webapp.lookalike"
    label = "lookalike"
    verbose_name = "Look-alike model"
    default_auto_field = "django.db.models.BigAutoField"
