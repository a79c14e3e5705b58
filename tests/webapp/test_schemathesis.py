"""Property-based API tests: schemathesis generates requests from our own OpenAPI schema
(/api/schema/) for every operation, valid and invalid ones, some with real ids of the demo
data (readers, stories, impressions; a web reader, asked for anonymously and from its own
browser session), and none may answer a server error (5xx). A bounded, derandomized number
of examples per operation keeps the run short and repeatable."""

from __future__ import annotations

import pytest
import schemathesis
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils.crypto import get_random_string
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from webapp.feed import services
from webapp.feed.access import SESSION_KEY
from webapp.feed.clients import address_key
from webapp.news.models import Item, Reader, Source
from webapp.news.services import reader_start

pytestmark = pytest.mark.django_db
EXAMPLES = 40  # per operation and generation mode


def _real_ids() -> dict:
    """Ids of the demo data: public readers, stories, impressions shown to them; and a web
    reader with a browser session of its own (cookie and CSRF token), which alone may read,
    click as and change that reader. The pages are shown to the client schemathesis's
    requests are (their WSGI environ names no address), which alone may click them."""
    readers = list(Reader.objects.filter(source=Source.DEMO).order_by("pk")[:5])
    web = reader_start()
    session = SessionStore()
    session[SESSION_KEY] = web.pk
    session.create()
    token = get_random_string(32)
    as_web = {"cookies": {settings.SESSION_COOKIE_NAME: session.session_key, settings.CSRF_COOKIE_NAME: token},
              "headers": {"X-CSRFToken": token}}
    shown = {r.pk: [e.impression_id for e in services.feed_build(reader=r, limit=5, client=address_key("")).entries]
             for r in [*readers[:3], web]}
    return {"readers": [(r.pk, {}) for r in readers] + [(web.pk, {}), (web.pk, as_web)],
            "items": list(Item.objects.order_by("pk").values_list("pk", flat=True)[:5]),
            "impressions": [(i, {}) for r in readers[:3] for i in shown[r.pk]] + [(i, as_web) for i in shown[web.pk]]}


def _with_real_ids(op, ids: dict) -> list:
    """Strategies for the operation with one input set to a real id (the rest generated)."""
    path, method = op.path, op.method.upper()
    pick = st.sampled_from
    if path == "/api/feed":
        return [pick(ids["readers"]).flatmap(lambda r: op.as_strategy(query={"reader": r[0]}, **r[1]))]
    if path == "/api/clicks":
        return [pick(ids["impressions"]).flatmap(lambda i: op.as_strategy(body={"impression": i[0]}, **i[1]))]
    if path == "/api/items/{item_id}":
        return [pick(ids["items"]).flatmap(lambda i: op.as_strategy(path_parameters={"item_id": i}))]
    if path == "/api/readers/{reader_id}":
        return [pick(ids["readers"]).flatmap(lambda r: op.as_strategy(path_parameters={"reader_id": r[0]}, **r[1]))]
    assert path == "/api/schema/" and method == "GET", f"new operation {method} {path}: give it real ids here"
    return []


@pytest.fixture
def wsgi_app():
    """Django's WSGI application, called in this thread inside the test's transaction (as
    Django's test client does: a request's start and end must not close the test's connection)."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield get_wsgi_application()
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


def test_no_operation_answers_a_server_error(demo_db, wsgi_app):
    schema = schemathesis.openapi.from_wsgi("/api/schema/", wsgi_app)
    # The schema's own endpoint stays out of schemathesis's operations unless named.
    operations = [result.ok() for result in schema.get_all_operations()] + \
                 [result.ok() for result in schema.include(path="/api/schema/").get_all_operations()]
    assert {op.label for op in operations} == {"GET /api/feed", "POST /api/clicks", "GET /api/items/{item_id}",
                                               "GET /api/readers/{reader_id}", "PATCH /api/readers/{reader_id}",
                                               "GET /api/schema/"}
    ids = _real_ids()
    failures, calls = [], []
    for op in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            strategies = [op.as_strategy(generation_mode=mode)]
            if mode is schemathesis.GenerationMode.POSITIVE:
                strategies += _with_real_ids(op, ids)

            @given(case=st.one_of(strategies))
            @hsettings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                       phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            def run(case) -> None:
                response = case.call_and_validate(checks=[not_a_server_error])
                calls.append((case.operation.label, response.status_code))

            try:
                run()
            except Exception as exc:  # noqa: BLE001 -- every operation runs; all failures are reported
                failures.append(f"{op.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)
    assert len(calls) >= len(operations) * EXAMPLES  # the cases did run
    answered = set(calls)
    # Real ids reached every success path (the web reader's PATCH too), bad input the errors.
    assert {("GET /api/feed", 200), ("POST /api/clicks", 201), ("GET /api/items/{item_id}", 200),
            ("GET /api/readers/{reader_id}", 200), ("PATCH /api/readers/{reader_id}", 200),
            ("GET /api/schema/", 200)} <= answered, answered
    assert {code for _, code in answered} >= {400, 404}
