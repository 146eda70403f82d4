"""GET /metrics: Prometheus text from a registry of the app's own (tests build several apps).

Per request, an ASGI middleware counts the route, model and status and times the
whole answer and, for event streams, the first event (time to first token). The
relay names the model and reports token usage into the request's record; model
lifecycle numbers are read from the manager when scraped, so nothing is counted twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nexa.runtime import ModelManager

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass
class RequestRecord:
    """What the relay learns about one request: which model served it and the tokens it used."""

    model: str = ""
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    audio_seconds: float = 0.0


_current: ContextVar[RequestRecord | None] = ContextVar("nexa_request_record", default=None)


def note_model(model_id: str) -> None:
    record = _current.get()
    if record is not None:
        record.model = model_id


def note_audio(seconds: float) -> None:
    """Record seconds of audio transcribed."""
    record = _current.get()
    if record is not None:
        record.audio_seconds += seconds


def note_usage(usage: Any) -> None:
    """Record an engine `usage` object (a chat's shape, or a transcript's input and output tokens);
    anything else is ignored."""
    record = _current.get()
    if record is not None and isinstance(usage, dict):
        details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
        record.prompt_tokens += int(usage.get("prompt_tokens") or usage.get("input_tokens") or 0)
        record.cached_tokens += int(details.get("cached_tokens") or 0)
        record.completion_tokens += int(usage.get("completion_tokens") or usage.get("output_tokens") or 0)


class Metrics:
    """The app's registry and request-level metrics."""

    def __init__(self, manager: ModelManager):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "nexa_requests", "HTTP requests answered, by route, model and status.",
            ["route", "model", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "nexa_request_duration_seconds", "Time from request to the end of its answer (streams: the last event).",
            ["route", "model"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.ttft = Histogram(
            "nexa_time_to_first_token_seconds", "Time from request to the first event of a streamed answer.",
            ["route", "model"], buckets=_TTFT_BUCKETS, registry=self.registry,
        )
        self.prompt_tokens = Counter(
            "nexa_prompt_tokens", "Prompt tokens, from the engine's usage (those from its prompt cache included).", ["model"], registry=self.registry
        )
        self.cached_tokens = Counter(
            "nexa_prompt_cached_tokens", "Prompt tokens the engine took from its prompt cache instead of processing "
            "them again (part of nexa_prompt_tokens).", ["model"], registry=self.registry,
        )
        self.generated_tokens = Counter(
            "nexa_generated_tokens", "Tokens generated, from the engine's usage.", ["model"], registry=self.registry
        )
        self.audio_seconds = Counter(
            "nexa_audio_seconds", "Seconds of audio transcribed or translated.", ["model"], registry=self.registry
        )
        self.registry.register(ModelCollector(manager))

    def observe(self, route: str, status: int, record: RequestRecord, elapsed: float, first_event: float | None) -> None:
        model = record.model
        self.requests.labels(route, model, str(status)).inc()
        self.latency.labels(route, model).observe(elapsed)
        if first_event is not None:
            self.ttft.labels(route, model).observe(first_event)
        if model:
            self.prompt_tokens.labels(model).inc(record.prompt_tokens)
            self.cached_tokens.labels(model).inc(record.cached_tokens)
            self.generated_tokens.labels(model).inc(record.completion_tokens)
            if record.audio_seconds:
                self.audio_seconds.labels(model).inc(record.audio_seconds)


class ModelCollector(Collector):
    """Model lifecycle metrics, read from the manager at scrape time."""

    def __init__(self, manager: ModelManager):
        self._manager = manager

    def collect(self) -> Iterator[Metric]:
        manager, stats = self._manager, self._manager.stats
        loaded = manager.loaded()
        yield GaugeMetricFamily("nexa_models_loaded", "Models loaded now.", value=len(loaded))
        in_flight = GaugeMetricFamily("nexa_requests_in_flight", "Requests being served, per model.", labels=["model"])
        queued = GaugeMetricFamily(
            "nexa_queue_depth", "Requests waiting for a free slot (in flight beyond --parallel).", labels=["model"]
        )
        for model in loaded:
            in_flight.add_metric([model.id], model.in_flight)
            queued.add_metric([model.id], model.queued)
        yield in_flight
        yield queued
        yield GaugeMetricFamily(
            "nexa_load_queue_depth", "Requests waiting for their model to find room and load.", value=manager.waiting()
        )
        used = manager.memory_used()
        yield GaugeMetricFamily("nexa_memory_estimated_bytes", "RAM loaded models take, by the budget's count.",
                                value=used.ram)
        yield GaugeMetricFamily("nexa_memory_budget_bytes", "The --memory-budget.", value=manager.memory_budget)
        on_device = GaugeMetricFamily("nexa_device_memory_bytes", "What loaded models take on each GPU.",
                                      labels=["device"])
        device_budget = GaugeMetricFamily("nexa_device_memory_budget_bytes", "Each GPU's budget.", labels=["device"])
        for device, budget in manager.device_budgets().items():
            on_device.add_metric([device], used.devices.get(device, 0))
            device_budget.add_metric([device], budget)
        yield on_device
        yield device_budget
        for name, help_, counts in (
            ("nexa_model_loads", "Models loaded.", stats.loads),
            ("nexa_model_load_failures", "Loads that failed.", stats.load_failures),
            ("nexa_worker_crashes", "Workers that exited by themselves.", stats.crashes),
            ("nexa_worker_restarts", "Loads that replaced a crashed worker.", stats.restarts),
        ):
            family = CounterMetricFamily(name, help_, labels=["model"])
            for model_id, count in counts.items():
                family.add_metric([model_id], count)
            yield family
        unloads = CounterMetricFamily("nexa_model_unloads", "Models unloaded, by reason.", labels=["model", "reason"])
        for (model_id, reason), count in stats.unloads.items():
            unloads.add_metric([model_id, reason], count)
        yield unloads


class MetricsMiddleware:
    """Pure ASGI (no buffering, so streams pass through): times each request and counts its outcome."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = RequestRecord()
        token = _current.set(record)
        started = time.monotonic()
        status, streaming, first_event = 500, False, None

        async def timed_send(message: Message) -> None:
            nonlocal status, streaming, first_event
            if message["type"] == "http.response.start":
                status = message["status"]
                streaming = any(k == b"content-type" and v.startswith(b"text/event-stream") for k, v in message["headers"])
            elif message["type"] == "http.response.body" and streaming and first_event is None and message.get("body"):
                first_event = time.monotonic() - started
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            _current.reset(token)
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe(route, status, record, time.monotonic() - started, first_event)


router = APIRouter(tags=["admin"])


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(request: Request) -> Response:
    """Prometheus metrics: requests, latency, time to first token, tokens, loaded models, loads and restarts."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def install(app: FastAPI, manager: ModelManager) -> None:
    app.state.metrics = Metrics(manager)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.include_router(router)
