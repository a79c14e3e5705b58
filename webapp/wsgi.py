"""WSGI entry point (gunicorn webapp.wsgi)."""

from __future__ import annotations

import os

import torch
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
application = get_wsgi_application()

# One request per thread: the web server's threads are the parallelism, and torch's own
# threads (the online tower embedding a new reader) would only contend with them.
torch.set_num_threads(1)
