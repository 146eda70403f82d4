"""Engine stream events that are not JSON objects (schemathesis found `data: null` on a streamed
/v1/completions) are skipped, not a 500 mid-stream (issue 21, item 13)."""

from __future__ import annotations

import asyncio
import json

import httpx

from nexa.server import relay


class _Lease:
    released = False

    def release(self) -> None:
        self.released = True


def test_events_that_are_not_objects_are_skipped_and_the_stream_goes_on():
    body = (b'data: null\n\ndata: [1, 2]\n\ndata: "text"\n\ndata: {not json\n\n'
            b'data: {"choices": [{"text": "ok", "index": 0}]}\n\ndata: [DONE]\n\n')
    lease = _Lease()

    async def read() -> list:
        upstream = httpx.Response(200, stream=httpx.ByteStream(body))
        return [chunk async for chunk in relay._parsed_chunks(upstream, lease)]  # type: ignore[arg-type]

    assert asyncio.run(read()) == [{"choices": [{"text": "ok", "index": 0}]}]
    assert lease.released


def test_a_body_with_images_or_audio_is_encoded_off_the_event_loop_and_sent_whole():
    class Worker:
        base_url, headers = "http://engine", {"Authorization": "Bearer k"}

    class Lease:
        worker = Worker()

    audio = {"type": "input_audio", "input_audio": {"data": "UklGRg" * 100_000, "format": "wav"}}
    heavy = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, audio]}], "stream": True}
    light = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    assert relay._carries_media(heavy) and not relay._carries_media(light)
    with httpx.Client() as client:  # both encodings send the same JSON
        for body in (heavy, light):
            request = asyncio.run(relay._post(client, Lease(), "/v1/chat/completions", body))
            assert request.headers["content-type"] == "application/json"
            assert json.loads(request.content) == body
