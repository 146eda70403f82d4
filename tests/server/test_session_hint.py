"""Session hints (nexa.server.session): each dialect's own field, read from the body the route parsed."""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from nexa.server.session import MAX_HINT, current_session_hint, note_session_hint, session_hint


def test_each_dialect_names_its_session_in_its_own_field() -> None:
    assert session_hint({}, {"prompt_cache_key": "pk", "user": "u"}) == "pk"  # Responses
    assert session_hint({}, {"metadata": {"user_id": "claude-user"}}) == "claude-user"  # Anthropic
    assert session_hint({}, {"user": "chat-user"}) == "chat-user"  # Chat Completions
    assert session_hint({"x-session-id": "header"}, {"user": "u"}) == "header"
    assert session_hint({}, {"previous_response_id": "resp_1"}) is None  # changes every turn
    assert session_hint({}, {"metadata": "not an object", "user": 7}) is None
    assert session_hint({}, None) is None and session_hint({}, [1, 2]) is None
    assert session_hint({}, {"user": "x" * 10_000}) == "x" * MAX_HINT


class Body(BaseModel):
    user: str | None = None


def test_the_hint_is_read_from_the_body_the_route_parsed() -> None:
    app = FastAPI(dependencies=[Depends(note_session_hint)])

    @app.post("/chat")
    async def chat(body: Body) -> dict:
        return {"hint": current_session_hint()}

    @app.post("/no-body")
    async def no_body() -> dict:
        return {"hint": current_session_hint()}

    client = TestClient(app)
    assert client.post("/chat", json={"user": "u1"}).json() == {"hint": "u1"}
    assert client.post("/chat", json={}, headers={"X-Session-Id": "s1"}).json() == {"hint": "s1"}
    assert client.post("/no-body", json={"user": "unread"}).json() == {"hint": None}
