"""Server-rendered pages: pick a demo reader or start reading as yourself (topics, profile,
an optional account), read the feed, click a story, read it."""

from __future__ import annotations

from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import UserCreationForm
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from recsys.ranker import MODES
from webapp.news import selectors, services
from webapp.news.access import SESSION_KEY, may_act_as, session_reader_id
from webapp.news.models import Item, Reader, Source


class ReaderForm(forms.Form):
    reader = forms.IntegerField(min_value=1, max_value=2**63 - 1)


class FeedForm(forms.Form):
    reader = forms.IntegerField(min_value=1, max_value=2**63 - 1, required=False)
    mode = forms.ChoiceField(choices=[(m, m) for m in MODES], required=False)
    w = forms.FloatField(min_value=0.0, max_value=1.0, required=False)
    n0 = forms.FloatField(min_value=0.0, max_value=1e9, required=False)
    budget = forms.FloatField(min_value=0.0, max_value=0.99, required=False)


class ClickForm(forms.Form):
    reader = forms.IntegerField(min_value=1, max_value=2**63 - 1)
    impression = forms.IntegerField(min_value=1, max_value=2**63 - 1)


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "news/home.html", {"readers": selectors.readers_for_picker()})


def _reader_for(request: HttpRequest, reader_id: int | None) -> Reader | None:
    """The reader a page acts as: the one asked for if this browser may act as them, else
    (no id given) the browser's own web reader."""
    reader_id = reader_id if reader_id is not None else session_reader_id(request)
    reader = selectors.reader_get(reader_id=reader_id) if reader_id is not None else None
    return reader if reader is not None and may_act_as(request, reader) else None


@require_GET
def feed(request: HttpRequest) -> HttpResponse:
    form = FeedForm(request.GET)
    if not form.is_valid():
        return render(request, "news/home.html",
                      {"readers": selectors.readers_for_picker(), "form": form}, status=400)
    reader_id = form.cleaned_data.get("reader")
    if reader_id is None:  # the browser's own reader, if it has one
        reader_id = session_reader_id(request)
        if reader_id is None:
            return redirect("news:home")
    now = timezone.now()
    reader, clicked, shown = selectors.reader_with_history(reader_id=reader_id, now=now)
    if reader is None or not may_act_as(request, reader):
        return render(request, "news/not_found.html", {"what": "reader"}, status=404)
    mode = form.cleaned_data.get("mode") or None
    w, n0, budget = (form.cleaned_data.get(k) for k in ("w", "n0", "budget"))
    page = services.feed_build(reader=reader, limit=settings.FEED_DEFAULT_LIMIT, mode=mode, weight=w, evidence=n0,
                               budget=budget, now=now, history=(clicked, shown))
    more = {"reader": reader.pk, **({"mode": mode} if mode else {}),
            **{k: v for k, v in (("w", w), ("n0", n0), ("budget", budget)) if v is not None}}
    return render(request, "news/feed.html", {
        "reader": reader,
        "page": page,
        "more": urlencode(more),
        "recent_clicks": selectors.reader_recent_clicks(reader=reader),
    })


@require_POST
def click(request: HttpRequest) -> HttpResponse:
    form = ClickForm(request.POST)
    if not form.is_valid():
        return render(request, "news/not_found.html", {"what": "story"}, status=400)
    reader = _reader_for(request, form.cleaned_data["reader"])
    if reader is None:
        return render(request, "news/not_found.html", {"what": "reader"}, status=404)
    try:
        result = services.click_record(
            impression_id=form.cleaned_data["impression"], reader_id=reader.pk,
            web_reader=reader.pk if reader.source == Source.WEB else None, throttle=True,
        )
    except services.RateLimited as exc:
        response = render(request, "news/rate_limited.html", {"limit": exc.limit, "retry_after": exc.retry_after},
                          status=429)
        response["Retry-After"] = str(exc.retry_after)
        return response
    except services.NotFound:
        return render(request, "news/not_found.html", {"what": "story"}, status=404)
    except services.Rejected:
        return render(request, "news/not_found.html", {"what": "story"}, status=400)
    # The target is built from stored ids, never from a URL in the request.
    target = reverse("news:item", args=[result.click.item_id])
    return HttpResponseRedirect(f"{target}?reader={result.click.reader_id}")


@require_GET
def item_detail(request: HttpRequest, item_id: int) -> HttpResponse:
    item = get_object_or_404(Item, pk=item_id)
    form = ReaderForm(request.GET)
    reader = _reader_for(request, form.cleaned_data["reader"]) if form.is_valid() else None
    return render(request, "news/item.html", {"item": item, "reader": reader})


# --- Readers of their own: start reading, topics, profile, an account ---------------------

class TopicsForm(forms.Form):
    topics = forms.MultipleChoiceField(choices=[], required=False, widget=forms.CheckboxSelectMultiple)

    def __init__(self, *args, reader: Reader, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["topics"].choices = [(c, c) for c in selectors.reader_topics_choices(reader=reader)]


class ProfileForm(TopicsForm):
    region = forms.ChoiceField(choices=[], required=False)
    age_band = forms.ChoiceField(choices=[], required=False, label="Age band")
    device = forms.ChoiceField(choices=[], required=False)

    def __init__(self, *args, reader: Reader, **kwargs) -> None:
        super().__init__(*args, reader=reader, **kwargs)
        for name, values in selectors.profile_choices().items():
            self.fields[name].choices = [("", "—")] + [(v, v) for v in values]


@require_POST
def start(request: HttpRequest) -> HttpResponse:
    """"Start reading": a reader tied to this browser session (kept if they sign up)."""
    reader_id = session_reader_id(request)
    if reader_id is None or not Reader.objects.filter(pk=reader_id).exists():
        reader = services.reader_start()
        request.session[SESSION_KEY] = reader.pk
    return redirect("news:topics")


@require_http_methods(["GET", "POST"])
def topics(request: HttpRequest) -> HttpResponse:
    """The first visit's optional topic pick."""
    reader = _reader_for(request, None)
    if reader is None:
        return redirect("news:home")
    form = TopicsForm(request.POST or None, reader=reader, initial={"topics": reader.topics})
    if request.method == "POST":
        if not form.is_valid():
            return render(request, "news/topics.html", {"form": form, "reader": reader}, status=400)
        services.reader_update(reader=reader, topics=form.cleaned_data["topics"])
        return redirect("news:feed")
    return render(request, "news/topics.html", {"form": form, "reader": reader})


@require_http_methods(["GET", "POST"])
def me(request: HttpRequest) -> HttpResponse:
    """The browser's own reader: what the feed knows of them, and the fields they can change."""
    reader = _reader_for(request, None)
    if reader is None:
        return redirect("news:home")
    form = ProfileForm(request.POST or None, reader=reader, initial={
        "topics": reader.topics, "region": reader.region, "age_band": reader.age_band, "device": reader.device})
    status = 200
    if request.method == "POST":
        if form.is_valid():
            d = form.cleaned_data
            services.reader_update(reader=reader, topics=d["topics"],
                                   profile={k: d[k] for k in services.READER_PROFILE_FIELDS})
            return redirect("news:me")
        status = 400
    return render(request, "news/me.html", {"form": form, "reader": reader,
                                            "profile": selectors.reader_profile(reader_id=reader.pk)}, status=status)


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    """An account that keeps the browser's reader (or a new one)."""
    form = UserCreationForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid():
            with transaction.atomic():
                user = form.save()
                session_reader = _reader_for(request, None)
                reader = services.reader_claim(reader=session_reader, user=user)
            login(request, user)
            request.session[SESSION_KEY] = reader.pk
            return redirect("news:topics" if not reader.topics else "news:feed")
        return render(request, "registration/signup.html", {"form": form}, status=400)
    return render(request, "registration/signup.html", {"form": form})


class LoginView(auth_views.LoginView):
    """Django's log-in (its `next` is checked against this host); afterwards the browser
    reads as the account's reader, or the account claims the session's reader."""

    template_name = "registration/login.html"

    def form_valid(self, form):
        session_reader = _reader_for(self.request, None)
        response = super().form_valid(form)
        reader = services.reader_claim(reader=session_reader, user=form.get_user())
        self.request.session[SESSION_KEY] = reader.pk
        return response

    def form_invalid(self, form):
        response = super().form_invalid(form)
        response.status_code = 400
        return response
