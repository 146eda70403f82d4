"""Stored responses, for `GET /v1/responses/{id}` and `previous_response_id`: in memory, least
recently used first out, bounded by count (the `responses_store` setting) and by bytes, so a
long-running server never grows without limit. A restart forgets them, as a local server may."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from nexa.compat.responses import as_input
from nexa.errors import NotStored
from nexa.wire.responses import InputItem, ReasoningItem, Response

# Bodies can carry base64 images: a few hundred MiB of them is plenty of history.
MAX_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class StoredResponse:
    items: list[InputItem]  # the whole input it answered, its own history included
    response: Response
    size: int  # bytes it is counted for: its items' JSON (history included) and its output's


def _kept(item: InputItem) -> InputItem:
    """`item` as stored: without what the engine never sees (a reasoning item's encrypted_content)."""
    if isinstance(item, ReasoningItem) and item.encrypted_content is not None:
        return item.model_copy(update={"encrypted_content": None})
    return item


class ResponseStore:
    def __init__(self, capacity: int, max_bytes: int = MAX_BYTES):
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, StoredResponse] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def put(self, history: tuple[list[InputItem], int], items: list[InputItem], response: Response) -> None:
        """Keep `response` to the conversation `history` (its items and their size, from `history_of`) and the
        request's own `items`, counted by what is kept (not by the request's size: a chunked body has none),
        dropping the least recently used responses over the limits."""
        earlier, earlier_bytes = history
        kept = [_kept(item) for item in items]
        size = earlier_bytes + sum(len(item.model_dump_json()) for item in kept) + len(response.model_dump_json())
        entry = StoredResponse([*earlier, *kept], response, size)
        self.delete(response.id)
        self._entries[response.id] = entry
        self._bytes += entry.size
        while self._entries and (len(self._entries) > self.capacity or self._bytes > self.max_bytes):
            _, dropped = self._entries.popitem(last=False)
            self._bytes -= dropped.size

    def get(self, response_id: str) -> Response | None:
        entry = self._entries.get(response_id)
        if entry is None:
            return None
        self._entries.move_to_end(response_id)
        return entry.response

    def history(self, response_id: str) -> list[InputItem]:
        """The conversation up to and including `response_id`'s output, as input items."""
        return self.history_of(response_id)[0]

    def history_of(self, response_id: str | None) -> tuple[list[InputItem], int]:
        """The conversation up to and including `response_id`'s output, as input items, and the bytes they
        are counted for; none for no id."""
        if response_id is None:
            return [], 0
        entry = self._entries.get(response_id)
        if entry is None:
            raise NotStored(
                f"previous response '{response_id}' is not stored (unknown, sent with store=false, or dropped "
                f"after the last {self.capacity} responses or a restart); send the whole conversation as 'input' instead",
                param="previous_response_id", code="previous_response_not_found",
            )
        self._entries.move_to_end(response_id)
        return [*entry.items, *as_input(entry.response.output)], entry.size

    def delete(self, response_id: str) -> bool:
        entry = self._entries.pop(response_id, None)
        if entry is not None:
            self._bytes -= entry.size
        return entry is not None
