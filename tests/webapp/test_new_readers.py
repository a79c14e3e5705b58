"""New readers: start reading with one click, pick topics, sign up and log in; their vector is
recomputed by the trained tower after every click (no retraining) and the feed turns personal;
nobody else can see or change them."""

from __future__ import annotations

from collections import Counter

import numpy as np
from django.contrib.auth import get_user_model
from django.test import Client

from webapp.feed.access import SESSION_KEY
from webapp.lookalike import registry, store
from webapp.lookalike.models import ModelKind, ModelRun, ReaderVector, SeedSet
from webapp.lookalike.online import reader_vector_refresh
from webapp.lookalike.seeds import seeds_refresh
from webapp.news.models import Click, Item, Reader, Source


def _start(client: Client) -> Reader:
    resp = client.post("/start/")
    assert resp.status_code == 302 and resp["Location"] == "/topics/"
    return Reader.objects.get(pk=client.session[SESSION_KEY])


def _csrf(client: Client) -> str:
    client.get("/")
    return client.cookies["csrftoken"].value


def test_start_reading_then_pick_topics(demo_db, client):
    reader = _start(client)
    assert reader.source == Source.WEB and reader.user is None and reader.topics == []
    assert _start(client).pk == reader.pk  # the same browser keeps its reader
    page = client.get("/topics/").content.decode()
    categories = sorted(set(Item.objects.filter(source="demo").values_list("category", flat=True)))
    assert all(f'value="{c}"' in page for c in categories)
    bad = client.post("/topics/", {"topics": ["no-such-topic"]})
    assert bad.status_code == 400 and "not one of the available choices" in bad.content.decode()
    assert Reader.objects.get(pk=reader.pk).topics == []  # nothing stored from the bad post
    resp = client.post("/topics/", {"topics": categories[:2]})
    assert resp.status_code == 302 and resp["Location"] == "/feed/"
    assert Reader.objects.get(pk=reader.pk).topics == categories[:2]
    feed = client.get("/feed/")  # no reader id: the browser's own
    assert feed.status_code == 200 and reader.name in feed.content.decode()
    assert Client().get("/topics/").status_code == 302  # no reader in that browser: back home


def test_get_only_and_post_only_pages(demo_db, client):
    assert client.get("/start/").status_code == 405
    assert Client(enforce_csrf_checks=True).post("/start/").status_code == 403  # CSRF on every POST


def test_each_click_recomputes_the_vector_and_makes_a_seed(trained, client):
    reader = _start(client)
    tower = ModelRun.objects.get(kind=ModelKind.USER_TOWER, is_active=True)
    assert not ReaderVector.objects.filter(reader=reader).exists()
    page = client.get(f"/api/feed?reader={reader.pk}").json()
    vectors, times = [], []
    for entry in page["items"][:3]:
        resp = client.post("/api/clicks", {"impression": entry["impression"]}, content_type="application/json",
                           HTTP_X_CSRFTOKEN=_csrf(client))
        assert resp.status_code == 201, resp.content
        row = ReaderVector.objects.get(reader=reader, model_run=tower)
        served = store.reader_vector_get(reader_id=reader.pk)
        assert np.array_equal(np.frombuffer(bytes(row.vector), "<f4"), served)  # Postgres and Redis agree
        vectors.append(served)
        times.append(row.computed_at)
    assert times == sorted(times) and len(set(times)) == 3
    assert not np.allclose(vectors[0], vectors[1]) and not np.allclose(vectors[1], vectors[2])
    # The vector is the trained tower's for these clicks: recomputing gives the same one.
    again = reader_vector_refresh(reader_id=reader.pk)
    assert np.allclose(again.vector, vectors[-1], atol=1e-6) and again.features.known_items == 3
    # At the next refresh the reader is a seed of the stories they clicked.
    seeds_refresh()
    clicked = [e["item"]["id"] for e in page["items"][:3]]
    for item_id in clicked:
        assert reader.pk in SeedSet.objects.get(item_id=item_id).seed_reader_ids
    profile = client.get(f"/api/readers/{reader.pk}").json()
    assert profile["clicks"] == 3 and profile["vector_computed_at"] is not None


def test_the_feed_is_popular_until_a_signal_then_personal(trained, client):
    reader = _start(client)
    first = client.get(f"/api/feed?reader={reader.pk}&limit=20").json()["items"]  # 20: counts less noisy than 10
    assert all("until you click or pick topics" in e["why"] for e in first)
    # Pick a topic: the feed leans towards it at once, and says why.
    topic = Counter(e["item"]["category"] for e in first).most_common()[-1][0]
    resp = client.patch(f"/api/readers/{reader.pk}", {"topics": [topic]}, content_type="application/json",
                        HTTP_X_CSRFTOKEN=_csrf(client))
    assert resp.status_code == 200 and resp.json()["topics"] == [topic]
    assert ReaderVector.objects.filter(reader=reader).exists()  # the pick alone gives a vector
    picked = client.get(f"/api/feed?reader={reader.pk}&limit=20").json()["items"]
    share = lambda items: sum(e["item"]["category"] == topic for e in items)  # noqa: E731
    assert share(picked) > share(first)
    assert any(e["why"] == f"New story on a topic you picked: {topic}." for e in picked
               if e["item"]["category"] == topic and not e["score_parts"]["warm"])
    # A click: the "why" of a story in that category names the clicked story.
    chosen = next(e for e in picked if e["item"]["category"] == topic)
    client.post("/api/clicks", {"impression": chosen["impression"]}, content_type="application/json",
                HTTP_X_CSRFTOKEN=_csrf(client))
    after = client.get(f"/api/feed?reader={reader.pk}").json()["items"]
    assert any(f"“{chosen['item']['title']}”" in e["why"] for e in after)


def test_nobody_else_sees_or_changes_a_web_reader(trained, client):
    reader = _start(client)
    page = client.get(f"/api/feed?reader={reader.pk}").json()
    other = Client()
    _start(other)  # another browser, with a reader of its own
    for c in (other, Client()):
        assert c.get(f"/api/readers/{reader.pk}").status_code == 404
        assert c.get(f"/api/feed?reader={reader.pk}").status_code == 404
        assert c.get(f"/feed/?reader={reader.pk}").status_code == 404
        resp = c.post("/api/clicks", {"impression": page["items"][0]["impression"]}, content_type="application/json")
        assert resp.status_code == 404 and "detail" in resp.json()
        assert c.patch(f"/api/readers/{reader.pk}", {"topics": []}, content_type="application/json").status_code \
            in (403, 404)
    assert not Click.objects.filter(reader=reader).exists()
    # The owner: a change without the CSRF token is refused, with it accepted.
    strict = Client(enforce_csrf_checks=True)
    strict.cookies = client.cookies
    no_token = strict.patch(f"/api/readers/{reader.pk}", {"region": "x"}, content_type="application/json")
    assert no_token.status_code == 403 and "CSRF" in no_token.json()["detail"]
    bad = client.patch(f"/api/readers/{reader.pk}", {"topics": ["nope"], "device": "x" * 40},
                       content_type="application/json", HTTP_X_CSRFTOKEN=_csrf(client))
    assert bad.status_code == 400 and "device" in bad.json()["errors"]
    bad = client.patch(f"/api/readers/{reader.pk}", {"topics": ["nope"]}, content_type="application/json",
                       HTTP_X_CSRFTOKEN=_csrf(client))
    assert bad.status_code == 400 and "nope" in bad.json()["errors"]["topics"][0]
    demo = Reader.objects.filter(source=Source.DEMO).first()
    assert client.patch(f"/api/readers/{demo.pk}", {"topics": []}, content_type="application/json",
                        HTTP_X_CSRFTOKEN=_csrf(client)).status_code == 400  # personas are read-only
    assert Client().get(f"/api/readers/{demo.pk}").status_code == 200  # and public


def test_sign_up_log_out_and_log_in_keep_the_reader(demo_db, client):
    reader = _start(client)
    for data, message in (
        ({"username": "ann", "password1": "correct-horse-9", "password2": "other-horse-9"},
         "The two password fields didn"),
        ({"username": "ann", "password1": "short", "password2": "short"}, "This password is too short"),
        ({"username": "", "password1": "correct-horse-9", "password2": "correct-horse-9"}, "This field is required"),
        ({"username": "a b!", "password1": "correct-horse-9", "password2": "correct-horse-9"},
         "Enter a valid username"),
    ):
        resp = client.post("/accounts/signup/", data)
        assert resp.status_code == 400 and message in resp.content.decode(), data
    assert not get_user_model().objects.exists()
    resp = client.post("/accounts/signup/", {"username": "ann", "password1": "correct-horse-9",
                                             "password2": "correct-horse-9"})
    assert resp.status_code == 302
    user = get_user_model().objects.get(username="ann")
    reader.refresh_from_db()
    assert reader.user == user and reader.name == "ann"  # the session's reader, kept
    again = Client().post("/accounts/signup/", {"username": "ann", "password1": "correct-horse-9",
                                                "password2": "correct-horse-9"})
    assert again.status_code == 400 and "already exists" in again.content.decode()
    assert client.get("/me/").status_code == 200 and "ann" in client.get("/me/").content.decode()
    assert client.get("/accounts/logout/").status_code == 405  # log out is a POST
    client.post("/accounts/logout/")
    assert client.get("/me/").status_code == 302  # nobody any more
    wrong = client.post("/accounts/login/", {"username": "ann", "password": "not-it"})
    assert wrong.status_code == 400 and "Please enter a correct username and password" in wrong.content.decode()
    ok = client.post("/accounts/login/?next=https://evil.example/", {"username": "ann", "password": "correct-horse-9"})
    assert ok.status_code == 302 and "evil" not in ok["Location"]  # no open redirect
    assert client.session[SESSION_KEY] == reader.pk
    assert Reader.objects.filter(source=Source.WEB).count() == 1


def test_profile_page_changes_only_known_values(demo_db, client):
    reader = _start(client)
    demo = Reader.objects.filter(source=Source.DEMO).exclude(region="").first()
    resp = client.post("/me/", {"region": demo.region, "age_band": demo.age_band, "device": demo.device,
                                "topics": []})
    assert resp.status_code == 302
    reader.refresh_from_db()
    assert (reader.region, reader.age_band, reader.device) == (demo.region, demo.age_band, demo.device)
    bad = client.post("/me/", {"region": "Atlantis", "topics": []})
    assert bad.status_code == 400 and "Select a valid choice" in bad.content.decode()
    reader.refresh_from_db()
    assert reader.region == demo.region


def test_admin_lists_new_readers_with_their_vectors_age(trained, client):
    web = _start(Client())
    reader_vector_refresh(reader_id=web.pk)
    admin = Client()
    admin.force_login(get_user_model().objects.create_user("editor", is_staff=True, is_superuser=True))
    page = admin.get("/admin/news/reader/?new=web").content.decode()
    assert web.name in page and "Vector age" in page and " s ago" in page
    assert Client().get("/admin/news/reader/").status_code == 302  # staff only


def test_without_a_trained_tower_clicks_still_count(demo_db, client):
    registry.clear()
    reader = _start(client)
    page = client.get(f"/api/feed?reader={reader.pk}").json()
    resp = client.post("/api/clicks", {"impression": page["items"][0]["impression"]},
                       content_type="application/json", HTTP_X_CSRFTOKEN=_csrf(client))
    assert resp.status_code == 201 and Click.objects.filter(reader=reader).count() == 1
    assert reader_vector_refresh(reader_id=reader.pk) is None


def test_a_retraining_keeps_web_readers_personal(trained, client):
    """The nightly retraining fits the tower on the demo readers; web readers of the demo
    catalog get their vectors under the new run before it serves."""
    from django.core.management import call_command

    reader = _start(client)
    client.patch(f"/api/readers/{reader.pk}", {"topics": ["sports"]}, content_type="application/json",
                 HTTP_X_CSRFTOKEN=_csrf(client))
    old = ModelRun.objects.get(kind=ModelKind.USER_TOWER, is_active=True)
    call_command("train", "--stage1-epochs", "1", "--stage2-epochs", "1", "--dim", "16", verbosity=0)
    new = ModelRun.objects.get(kind=ModelKind.USER_TOWER, is_active=True)
    assert new.pk != old.pk
    assert ReaderVector.objects.filter(reader=reader, model_run=new).exists()
    assert store.reader_vector_get(reader_id=reader.pk) is not None  # served under the new run
