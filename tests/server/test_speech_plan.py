"""How a recording's pieces go to the engine, without a server: grouped as far as a slot's share of the
shared KV cache holds them, the groups side by side as far as the slots and the cache allow."""

from __future__ import annotations

import numpy as np
import pytest

from nexa.media.audio import PIECE_SECONDS, Piece
from nexa.server.speech import MOST_PIECES, PIECE_TOKENS, Plan, groups, plan


def pieces(count: int) -> list[Piece]:
    return [Piece(i, i * PIECE_SECONDS, (i + 1) * PIECE_SECONDS, np.zeros(0, np.int16)) for i in range(count)]


def indices(grouped: list) -> list[list[int]]:
    return [[piece.index for piece in group] for group in grouped]


@pytest.mark.parametrize("slots, context, expected", [
    (4, 4 * PIECE_TOKENS, Plan(1, 4)),  # a window a slot: one piece a request, every slot busy
    (2, 4096, Plan(2, 2)),  # the test servers' audio models
    (4, 6 * PIECE_TOKENS, Plan(1, 4)),  # a share of 1.5 pieces holds one
    (1, 32768, Plan(MOST_PIECES, 1)),  # room for 32 pieces, but a request takes 16 at most
    (4, 2 * PIECE_TOKENS, Plan(1, 2)),  # a cache too small for every slot to hold a window
    (8, 512, Plan(1, 1)),  # one at a time, whatever the cache
])
def test_a_request_takes_what_a_slots_share_of_the_cache_holds(slots, context, expected):
    assert plan(slots, context) == expected


def test_timed_answers_take_a_request_per_piece():
    assert plan(2, 4096, most=1) == Plan(1, 2)
    assert plan(4, 32768, most=1) == Plan(1, 4)


def test_groups_are_consecutive_and_even():
    assert indices(groups(pieces(5), 4)) == [[0, 1, 2], [3, 4]]
    assert [len(g) for g in groups(pieces(21), 2)] == [2] * 10 + [1]
    assert [len(g) for g in groups(pieces(21), 16)] == [11, 10]
    assert indices(groups(pieces(1), 16)) == [[0]]
    assert [p.index for g in groups(pieces(21), 3) for p in g] == list(range(21))


def test_a_streamed_transcript_starts_with_a_group_of_one_piece():
    assert indices(groups(pieces(5), 4, first=1)) == [[0], [1, 2, 3, 4]]
    assert [len(g) for g in groups(pieces(21), 16, first=1)] == [1, 10, 10]
    assert indices(groups(pieces(1), 16, first=1)) == [[0]]
