"""JSON API: the feed, clicks, and a health check. Every error answers JSON."""

from __future__ import annotations

import logging
import time

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound as DRFNotFound
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from webapp.common.ids import ID_MAX, IntegerApiField
from webapp.feed import selectors, services
from webapp.feed.clients import client_keys, client_throttle
from webapp.lookalike.selectors import item_seed_stats
from webapp.news import selectors as news_selectors
from webapp.news.models import Reader, Source

log = logging.getLogger(__name__)


def exception_handler(exc, context):
    """DRF's handler, plus our domain errors: NotFound -> 404, Rejected -> 400, RateLimited ->
    429 (with Retry-After). Every error body has one shape: {"detail": what went wrong}, and
    for bad input {"errors": {field: [messages]}} besides."""
    if isinstance(exc, services.NotFound):
        exc = DRFNotFound(str(exc))
    elif isinstance(exc, services.Rejected):
        return Response({"detail": str(exc), "errors": {exc.field: [str(exc)]}}, status=status.HTTP_400_BAD_REQUEST)
    elif isinstance(exc, services.RateLimited):
        return Response({"detail": str(exc), "limit": exc.limit, "retry_after": exc.retry_after},
                        status=status.HTTP_429_TOO_MANY_REQUESTS, headers={"Retry-After": str(exc.retry_after)})
    response = drf_exception_handler(exc, context)
    if isinstance(exc, ValidationError) and response is not None:
        errors = response.data if isinstance(response.data, dict) else {"non_field_errors": response.data}
        response.data = {"detail": f"Invalid input: {', '.join(map(str, errors))}.", "errors": errors}
    return response


def _staff(request: Request) -> bool:
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.is_staff)


def _reader_visible(request: Request, reader_id: int) -> Reader:
    return _visible(request, news_selectors.reader_get(reader_id=reader_id), reader_id)


def _visible(request: Request, reader: Reader | None, reader_id: int) -> Reader:
    """The reader, if this request may act as them; NotFound otherwise (no reader either)."""
    if reader is None or not _may_read(request, reader):
        raise services.NotFound(f"Reader {reader_id} not found.")
    return reader


def _may_read(request: Request, reader: Reader) -> bool:
    """Whether this request may act as the reader (web readers: only their own browser
    session or account; see webapp.feed.access)."""
    return reader.source != Source.WEB or request.auth == reader.pk


class FeedQuerySerializer(serializers.Serializer):
    reader = IntegerApiField(min_value=1, max_value=ID_MAX)
    limit = IntegerApiField(min_value=1, required=False)
    arm = serializers.ChoiceField(choices=services.arm_names(), required=False)

    def validate(self, attrs: dict) -> dict:
        repeated = [name for name in self.fields if len(self.initial_data.getlist(name)) > 1]
        if repeated:  # reader=7&reader=8 is an error, not reader 8
            raise serializers.ValidationError({name: ["Given more than once."] for name in repeated})
        return attrs

    def validate_limit(self, value: int) -> int:
        if value > settings.FEED_MAX_LIMIT:
            raise serializers.ValidationError(
                f"Ensure this value is less than or equal to {settings.FEED_MAX_LIMIT}."
            )
        return value


class ItemSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    external_id = serializers.CharField()
    title = serializers.CharField()
    abstract = serializers.CharField()
    category = serializers.CharField()
    subcategory = serializers.CharField()
    url = serializers.CharField()
    published_at = serializers.DateTimeField()
    status = serializers.CharField()


class FeedEntrySerializer(serializers.Serializer):
    impression = serializers.IntegerField(source="impression_id")
    position = serializers.IntegerField()
    score = serializers.FloatField()
    score_parts = serializers.DictField()
    why = serializers.CharField()
    item = ItemSerializer()


class FeedSerializer(serializers.Serializer):
    request_id = serializers.CharField()
    reader = serializers.IntegerField(source="reader_id")
    arm = serializers.CharField(help_text="the ranker arm that ranked the page (recsys.arms), or baseline")
    degraded = serializers.BooleanField(help_text="the page was built with a fallback (Redis unreachable, a model "
                                                  "that cannot be loaded); it is still a full page")
    degraded_reasons = serializers.ListField(child=serializers.CharField(), source="degraded",
                                             help_text="what fell back, and why; empty when not degraded")
    items = FeedEntrySerializer(many=True, source="entries")

    def to_representation(self, page) -> dict:
        """The same fields as declared (they make the OpenAPI schema), built directly: DRF's
        field-by-field path costs about a millisecond per page, a tenth of the request."""
        date = serializers.DateTimeField()
        return {"request_id": page.request_id, "reader": page.reader_id, "arm": page.arm,
                "degraded": bool(page.degraded), "degraded_reasons": list(page.degraded), "items": [
            {"impression": e.impression_id, "position": e.position, "score": e.score, "score_parts": e.score_parts,
             "why": e.why, "item": {
                 "id": e.item.pk, "external_id": e.item.external_id, "title": e.item.title,
                 "abstract": e.item.abstract, "category": e.item.category, "subcategory": e.item.subcategory,
                 "url": e.item.url, "status": e.item.status,
                 "published_at": date.to_representation(e.item.published_at) if e.item.published_at else None}}
            for e in page.entries]}


class FeedView(APIView):
    # GET only: a page logs its impressions, and a HEAD request must write nothing.
    http_method_names = ["get", "options"]

    @extend_schema(
        parameters=[
            OpenApiParameter("reader", int, required=True, description="Reader id"),
            OpenApiParameter("limit", int, description="Stories per page (default 10)"),
            OpenApiParameter("arm", str, enum=services.arm_names(), description="The ranker arm for this request "
                                                                      "(default FEED_ARM)"),
        ],
        responses=FeedSerializer,
    )
    def get(self, request: Request) -> Response:
        start = time.perf_counter()
        query = FeedQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        page = services.feed_serve(reader_id=data["reader"], limit=data.get("limit", settings.FEED_DEFAULT_LIMIT),
                                   arm=data.get("arm"), client=client_keys(request),
                                   may_read=lambda reader: _may_read(request, reader))
        response = Response(FeedSerializer(page).data)
        page.served(seconds=time.perf_counter() - start)
        return response


class SeedStatsSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    updated_at = serializers.DateTimeField(allow_null=True)
    clusters = serializers.ListField(child=serializers.IntegerField(), help_text="seeds per k-means cluster")
    computed_at = serializers.DateTimeField(allow_null=True)
    sample = serializers.ListField(child=serializers.IntegerField(), help_text=(
        "the latest seed readers' ids, public personas only (readers created on the web are counted, never named)"))


class ItemDetailSerializer(ItemSerializer):
    impressions = serializers.IntegerField(source="shown_count")
    clicks = serializers.IntegerField(source="click_count")
    seeds = SeedStatsSerializer()


class ItemView(APIView):
    @extend_schema(responses=ItemDetailSerializer)
    def get(self, request: Request, item_id: int) -> Response:
        item = news_selectors.item_get(item_id=item_id, unpublished=_staff(request))
        if item is None:
            raise services.NotFound(f"Item {item_id} not found.")
        item.seeds = item_seed_stats(item_id=item.pk)
        return Response(ItemDetailSerializer(item).data)


class ReaderProfileSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="reader.pk")
    name = serializers.CharField(source="reader.name")
    source = serializers.CharField(source="reader.source")
    region = serializers.CharField(source="reader.region")
    age_band = serializers.CharField(source="reader.age_band")
    device = serializers.CharField(source="reader.device")
    clicks = serializers.IntegerField()
    impressions = serializers.IntegerField()
    categories = serializers.DictField(child=serializers.IntegerField(), help_text="clicks per category")
    recent = ItemSerializer(many=True, help_text="the latest clicked stories")
    topics = serializers.ListField(child=serializers.CharField(), source="reader.topics",
                                   help_text="categories the reader picked")
    vector_computed_at = serializers.DateTimeField(allow_null=True)


class ReaderUpdateSerializer(serializers.Serializer):
    topics = serializers.ListField(child=serializers.CharField(max_length=64), required=False, max_length=50,
                                   help_text="categories of the reader's catalog")
    region = serializers.CharField(max_length=64, required=False, allow_blank=True)
    age_band = serializers.CharField(max_length=16, required=False, allow_blank=True)
    device = serializers.CharField(max_length=16, required=False, allow_blank=True)


class ReaderView(APIView):
    @extend_schema(responses=ReaderProfileSerializer)
    def get(self, request: Request, reader_id: int) -> Response:
        _reader_visible(request, reader_id)
        return Response(ReaderProfileSerializer(selectors.reader_profile(reader_id=reader_id)).data)

    @extend_schema(request=ReaderUpdateSerializer, responses=ReaderProfileSerializer)
    def patch(self, request: Request, reader_id: int) -> Response:
        """Change your own topics or profile fields (web readers only, from their browser
        session with its CSRF token); the reader vector is recomputed at once."""
        reader = _reader_visible(request, reader_id)
        if reader.source != Source.WEB:
            raise services.Rejected("Only readers created on the web can be changed.", field="reader")
        body = ReaderUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        topics = data.pop("topics", None)
        services.reader_update(reader=reader, topics=topics, profile=data)
        return Response(ReaderProfileSerializer(selectors.reader_profile(reader_id=reader_id)).data)


class ClickInSerializer(serializers.Serializer):
    impression = IntegerApiField(min_value=1, max_value=ID_MAX)
    reader = IntegerApiField(min_value=1, max_value=ID_MAX, required=False)


class ClickOutSerializer(serializers.Serializer):
    click = serializers.IntegerField(source="click.pk")
    impression = serializers.IntegerField(source="click.impression_id")
    reader = serializers.IntegerField(source="click.reader_id")
    item = serializers.IntegerField(source="click.item_id")
    clicked_at = serializers.DateTimeField(source="click.clicked_at")
    created = serializers.BooleanField()


class RateLimitedSerializer(serializers.Serializer):
    detail = serializers.CharField()
    limit = serializers.CharField(help_text="CLICK_RATE_LIMIT, e.g. 30/minute")
    retry_after = serializers.IntegerField(help_text="seconds until the window ends (also the Retry-After header)")


class ClickView(APIView):
    @extend_schema(request=ClickInSerializer, responses={
        201: ClickOutSerializer, 200: ClickOutSerializer,
        429: OpenApiResponse(RateLimitedSerializer, description="over CLICK_RATE_LIMIT for this reader or "
                                                               "CLICK_CLIENT_RATE_LIMIT for this client; nothing "
                                                               "stored; see Retry-After")})
    def post(self, request: Request) -> Response:
        body = ClickInSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        keys = client_keys(request)
        client_throttle(keys, scope="clicks")
        result = services.click_record(
            impression_id=body.validated_data["impression"],
            reader_id=body.validated_data.get("reader"),
            web_reader=request.auth,
            throttle=True,
            client=keys,
        )
        code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        return Response(ClickOutSerializer(result).data, status=code)


@csrf_exempt
@require_safe
def healthz(request) -> JsonResponse:
    """Postgres and Redis reachability; 503 if either is down."""
    checks = {}
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
        checks["postgres"] = "ok"
    except Exception as exc:  # any failure means "down"; say why
        checks["postgres"] = f"error: {exc.__class__.__name__}"
    try:
        # retry=None: one attempt (redis-py retries a timeout ten times by default).
        redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1, retry=None).ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {exc.__class__.__name__}"
    ok = all(v == "ok" for v in checks.values())
    return JsonResponse({"status": "ok" if ok else "degraded", **checks}, status=200 if ok else 503)


def json_404(request, exception=None) -> JsonResponse:
    return JsonResponse({"detail": "Not found."}, status=404)


def json_500(request) -> JsonResponse:
    return JsonResponse({"detail": "Server error."}, status=500)


