"""Server-rendered pages: pick a demo reader or start reading as yourself (topics, profile,
an optional account), read the feed, click a story, read it."""

from __future__ import annotations

import time
from urllib.parse import urlencode

import redis
from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import UserCreationForm
from django.core.cache import cache
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from webapp.common.ids import ID_MAX, IntegerFormField
from webapp.feed import selectors, services
from webapp.feed.access import SESSION_KEY, may_act_as, session_reader_id
from webapp.feed.clients import client_keys, client_throttle
from webapp.feed.dashboard import CACHE_SECONDS as DASHBOARD_SECONDS
from webapp.feed.dashboard import dashboard_cached
from webapp.news import selectors as news_selectors
from webapp.news import services as news_services
from webapp.news.models import Reader, Source


class OnceForm(forms.Form):
    """A form whose every field may be given once: `reader=7&reader=8` is an error, not 8."""

    def clean(self):
        data = super().clean()
        for name in self.fields:
            if hasattr(self.data, "getlist") and len(self.data.getlist(name)) > 1:
                self.add_error(name, "Given more than once.")
        return data


class ReaderForm(OnceForm):
    reader = IntegerFormField(min_value=1, max_value=ID_MAX)


class FeedForm(OnceForm):
    reader = IntegerFormField(min_value=1, max_value=ID_MAX, required=False)
    arm = forms.ChoiceField(choices=[(a, a) for a in services.arm_names()], required=False)


class ClickForm(OnceForm):
    reader = IntegerFormField(min_value=1, max_value=ID_MAX)
    impression = IntegerFormField(min_value=1, max_value=ID_MAX)


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "feed/home.html", {"readers": news_selectors.readers_for_picker()})


def _reader_for(request: HttpRequest, reader_id: int | None) -> Reader | None:
    """The reader a page acts as: the one asked for if this browser may act as them, else
    (no id given) the browser's own web reader."""
    reader_id = reader_id if reader_id is not None else session_reader_id(request)
    reader = news_selectors.reader_get(reader_id=reader_id) if reader_id is not None else None
    return reader if reader is not None and may_act_as(request, reader) else None


@require_GET
def feed(request: HttpRequest) -> HttpResponse:
    start = time.perf_counter()
    form = FeedForm(request.GET)
    if not form.is_valid():
        return render(request, "feed/home.html",
                      {"readers": news_selectors.readers_for_picker(), "form": form}, status=400)
    reader_id = form.cleaned_data.get("reader")
    if reader_id is None:  # the browser's own reader, if it has one
        reader_id = session_reader_id(request)
        if reader_id is None:
            return redirect("feed:home")
    arm = form.cleaned_data.get("arm") or None
    try:
        page = services.feed_serve(reader_id=reader_id, limit=settings.FEED_DEFAULT_LIMIT, arm=arm,
                                   client=client_keys(request), may_read=lambda reader: may_act_as(request, reader))
    except services.NotFound:
        return render(request, "feed/not_found.html", {"what": "reader"}, status=404)
    except services.RateLimited as exc:
        return _rate_limited(request, exc)
    reader = page.reader
    more = {"reader": reader.pk, **({"arm": arm} if arm else {})}
    response = render(request, "feed/feed.html", {
        "reader": reader,
        "page": page,
        "more": urlencode(more),
        "recent_clicks": news_selectors.reader_recent_clicks(reader=reader),
    })
    page.served(seconds=time.perf_counter() - start)
    return response


def _rate_limited(request: HttpRequest, exc: services.RateLimited) -> HttpResponse:
    response = render(request, "feed/rate_limited.html", {"detail": str(exc)},
                      status=429)
    response["Retry-After"] = str(exc.retry_after)
    return response


@require_POST
def click(request: HttpRequest) -> HttpResponse:
    form = ClickForm(request.POST)
    if not form.is_valid():
        return render(request, "feed/not_found.html", {"what": "story"}, status=400)
    reader = _reader_for(request, form.cleaned_data["reader"])
    if reader is None:
        return render(request, "feed/not_found.html", {"what": "reader"}, status=404)
    keys = client_keys(request)
    try:
        client_throttle(keys, scope="clicks")
        result = services.click_record(
            impression_id=form.cleaned_data["impression"], reader_id=reader.pk,
            web_reader=reader.pk if reader.source == Source.WEB else None, throttle=True, client=keys,
        )
    except services.RateLimited as exc:
        return _rate_limited(request, exc)
    except services.NotFound:
        return render(request, "feed/not_found.html", {"what": "story"}, status=404)
    except services.Rejected:
        return render(request, "feed/not_found.html", {"what": "story"}, status=400)
    # The target is built from stored ids, never from a URL in the request.
    target = reverse("feed:item", args=[result.click.item_id])
    return HttpResponseRedirect(f"{target}?reader={result.click.reader_id}")


@require_GET
def item_detail(request: HttpRequest, item_id: int) -> HttpResponse:
    item = news_selectors.item_get(item_id=item_id, unpublished=request.user.is_staff)
    if item is None:
        return render(request, "feed/not_found.html", {"what": "story"}, status=404)
    if "reader" in request.GET:
        form = ReaderForm(request.GET)
        if not form.is_valid():
            return render(request, "feed/not_found.html", {"what": "reader"}, status=400)
        reader = _reader_for(request, form.cleaned_data["reader"])
    else:  # opened directly: the browser's own reader, if it has one
        reader = _reader_for(request, None)
    return render(request, "feed/item.html", {"item": item, "reader": reader})


# --- Readers of their own: start reading, topics, profile, an account ---------------------

class TopicsForm(forms.Form):
    topics = forms.MultipleChoiceField(choices=[], required=False, widget=forms.CheckboxSelectMultiple)

    def __init__(self, *args, reader: Reader, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["topics"].choices = [(c, c) for c in news_selectors.reader_topics_choices(reader=reader)]


class ProfileForm(TopicsForm):
    region = forms.ChoiceField(choices=[], required=False)
    age_band = forms.ChoiceField(choices=[], required=False, label="Age band")
    device = forms.ChoiceField(choices=[], required=False)

    def __init__(self, *args, reader: Reader, **kwargs) -> None:
        super().__init__(*args, reader=reader, **kwargs)
        for name, values in news_selectors.profile_choices().items():
            self.fields[name].choices = [("", "—")] + [(v, v) for v in values]


@require_POST
def start(request: HttpRequest) -> HttpResponse:
    """"Start reading": a reader tied to this browser session (kept if they sign up)."""
    reader_id = session_reader_id(request)
    if reader_id is None or not Reader.objects.filter(pk=reader_id).exists():
        try:
            client_throttle(client_keys(request), scope="readers")
        except services.RateLimited as exc:
            return _rate_limited(request, exc)
        reader = news_services.reader_start()
        request.session[SESSION_KEY] = reader.pk
    return redirect("feed:topics")


@require_http_methods(["GET", "POST"])
def topics(request: HttpRequest) -> HttpResponse:
    """The first visit's optional topic pick."""
    reader = _reader_for(request, None)
    if reader is None:
        return redirect("feed:home")
    form = TopicsForm(request.POST or None, reader=reader, initial={"topics": reader.topics})
    if request.method == "POST":
        if not form.is_valid():
            return render(request, "feed/topics.html", {"form": form, "reader": reader}, status=400)
        services.reader_update(reader=reader, topics=form.cleaned_data["topics"])
        return redirect("feed:feed")
    return render(request, "feed/topics.html", {"form": form, "reader": reader})


@require_http_methods(["GET", "POST"])
def me(request: HttpRequest) -> HttpResponse:
    """The browser's own reader: what the feed knows of them, and the fields they can change."""
    reader = _reader_for(request, None)
    if reader is None:
        return redirect("feed:home")
    form = ProfileForm(request.POST or None, reader=reader, initial={
        "topics": reader.topics, "region": reader.region, "age_band": reader.age_band, "device": reader.device})
    status = 200
    if request.method == "POST":
        if form.is_valid():
            d = form.cleaned_data
            services.reader_update(reader=reader, topics=d["topics"],
                                   profile={k: d[k] for k in news_services.READER_PROFILE_FIELDS})
            return redirect("feed:me")
        status = 400
    return render(request, "feed/me.html", {"form": form, "reader": reader,
                                            "profile": selectors.reader_profile(reader_id=reader.pk)}, status=status)


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    """An account that keeps the browser's reader (or a new one)."""
    form = UserCreationForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid():
            try:  # an account, and a reader unless the session has one
                client_throttle(client_keys(request), scope="readers")
            except services.RateLimited as exc:
                return _rate_limited(request, exc)
            with transaction.atomic():
                user = form.save()
                session_reader = _reader_for(request, None)
                reader = news_services.reader_claim(reader=session_reader, user=user)
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            request.session[SESSION_KEY] = reader.pk
            return redirect("feed:topics" if not reader.topics else "feed:feed")
        return render(request, "registration/signup.html", {"form": form}, status=400)
    return render(request, "registration/signup.html", {"form": form})


class LoginView(auth_views.LoginView):
    """Django's log-in (its `next` is checked against this host); afterwards the browser
    reads as the account's reader, or the account claims the session's reader."""

    template_name = "registration/login.html"

    def form_valid(self, form):
        session_reader = _reader_for(self.request, None)
        response = super().form_valid(form)
        reader = news_services.reader_claim(reader=session_reader, user=form.get_user())
        self.request.session[SESSION_KEY] = reader.pk
        return response

    def form_invalid(self, form):
        response = super().form_invalid(form)
        response.status_code = 400
        return response


@staff_member_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """The admin's live dashboard (webapp.feed.dashboard). Its figures are shared by every
    admin for DASHBOARD_SECONDS, and each admin's page is kept as rendered for as long (by
    session, after the staff check): a browser reloading it in a loop costs the web
    processes a cache read, not a render. Without Redis it is rendered each time. Past
    ADMIN_PAGE_RATE_LIMIT a 429 (webapp.feed.middleware.StaffPageLimit)."""
    key = f"dashboard:page:{request.session.session_key}"
    try:
        page = cache.get(key)
    except redis.RedisError:
        page = None
    if page is not None:
        return HttpResponse(page)
    response = render(request, "admin/dashboard.html", {**admin.site.each_context(request),
                                                       "title": "Live dashboard", "d": dashboard_cached()})
    try:
        cache.set(key, response.content, timeout=DASHBOARD_SECONDS)
    except redis.RedisError:
        pass
    return response
