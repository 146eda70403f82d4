"""The shape every dialect's stream translator has: engine chat or completion chunks (parsed) in,
the dialect's events out. nexa.server.stream drives one through a stream and frames its events; a
new dialect (or a new streamed endpoint) is one more subclass, never another loop."""

from __future__ import annotations

from typing import Any


class Translator:
    """One streamed answer's translation. Each method returns the events to send, in order; an event
    is whatever the dialect's framing encodes (a dict, or an (event name, data) pair)."""

    def start(self) -> list[Any]:
        """The events that open the stream, before the engine's first chunk."""
        return []

    def feed(self, chunk: Any) -> list[Any]:
        """The events for one engine chunk, parsed (a dict the translator may change: it is its own
        copy) or, for the engine's own dialect, the line as it came."""
        raise NotImplementedError

    def finish(self) -> list[Any]:
        """The events that close a stream the engine finished."""
        return []

    def fail(self, body: dict[str, Any]) -> list[Any]:
        """The events that end a stream which failed midway; `body` is the error in the dialect's own
        shape, as its non-streamed error would be. By default that body is the last event."""
        return [body]


class Unchanged(Translator):
    """A stream whose events nexa writes in the dialect's shape already (a transcript's deltas)."""

    def feed(self, chunk: Any) -> list[Any]:
        return [chunk]
