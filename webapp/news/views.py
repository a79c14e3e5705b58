"""Server-rendered pages: pick a reader, read the feed, click a story, read it."""

from __future__ import annotations

from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from recsys.ranker import MODES
from webapp.news import selectors, services
from webapp.news.models import Item


class ReaderForm(forms.Form):
    reader = forms.IntegerField(min_value=1, max_value=2**63 - 1)


class FeedForm(ReaderForm):
    mode = forms.ChoiceField(choices=[(m, m) for m in MODES], required=False)
    w = forms.FloatField(min_value=0.0, max_value=1.0, required=False)


class ClickForm(forms.Form):
    reader = forms.IntegerField(min_value=1, max_value=2**63 - 1)
    impression = forms.IntegerField(min_value=1, max_value=2**63 - 1)


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "news/home.html", {"readers": selectors.readers_for_picker()})


@require_GET
def feed(request: HttpRequest) -> HttpResponse:
    form = FeedForm(request.GET)
    if not form.is_valid():
        return render(request, "news/home.html",
                      {"readers": selectors.readers_for_picker(), "form": form}, status=400)
    reader = selectors.reader_get(reader_id=form.cleaned_data["reader"])
    if reader is None:
        return render(request, "news/not_found.html", {"what": "reader"}, status=404)
    mode, w = form.cleaned_data.get("mode") or None, form.cleaned_data.get("w")
    page = services.feed_build(reader=reader, limit=settings.FEED_DEFAULT_LIMIT, mode=mode, weight=w)
    more = {"reader": reader.pk, **({"mode": mode} if mode else {}), **({"w": w} if w is not None else {})}
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
    try:
        result = services.click_record(
            impression_id=form.cleaned_data["impression"], reader_id=form.cleaned_data["reader"]
        )
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
    reader = selectors.reader_get(reader_id=form.cleaned_data["reader"]) if form.is_valid() else None
    return render(request, "news/item.html", {"item": item, "reader": reader})
