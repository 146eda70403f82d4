"""The replica-choice rule (nexa.cluster.affinity) without Ray: prompt keys, the bounded prefix tree, and
session, prefix, load and fallback decisions."""

from __future__ import annotations

import json

from nexa.cluster.affinity import BLOCK, Affinity, PrefixTree, RouteKey, prefix_blocks


def body(messages: list[dict], **fields: object) -> bytes:
    """As the relay sends it: sampling fields and tools first, the conversation last."""
    return json.dumps({**fields, "messages": messages}).encode()


SYSTEM = [{"role": "system", "content": "You are a careful agent. " * 200}]


def turns(n: int, system: list[dict] = SYSTEM) -> list[dict]:
    messages = list(system)
    for i in range(n):
        messages += [{"role": "user", "content": f"step {i}: " + "look at the file " * 20},
                     {"role": "assistant", "content": f"done with step {i}"}]
    return messages


def test_a_later_turn_extends_the_earlier_turns_key() -> None:
    first, later = prefix_blocks(body(turns(1))), prefix_blocks(body(turns(3)))
    assert len(first) >= 9 and len(later) > len(first)
    # All but the last whole block of turn 1 (which held its closing brackets) lead turn 3's key.
    assert later[:len(first) - 1] == first[:-1]


def test_the_key_starts_at_the_conversation() -> None:
    """Sampling fields change from turn to turn, and a tool schema may name a property 'messages'."""
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"properties": {"messages": {"type": "string"}}}}}]
    plain = prefix_blocks(body(turns(2), max_tokens=16))
    assert prefix_blocks(body(turns(2), max_tokens=900, temperature=0.2, tools=tools))[:-1] == plain[:-1]
    assert prefix_blocks(json.dumps({"prompt": "x" * 3 * BLOCK}).encode())
    assert prefix_blocks(b'{"input": "embed me"}') == () and prefix_blocks(None) == ()


def test_distinct_conversations_share_no_block() -> None:
    other = [{"role": "system", "content": "You review pull requests. " * 200}]
    assert not set(prefix_blocks(body(turns(2)))) & set(prefix_blocks(body(turns(2, other))))


def test_the_tree_matches_leading_blocks_and_forgets_the_least_recently_used() -> None:
    tree = PrefixTree(capacity=6)
    tree.add((1, 2, 3, 4))
    assert tree.match((1, 2, 3, 9)) == 3 and tree.match((9, 1)) == 0
    tree.add((5, 6, 7))  # 1 goes: the replica's cache has evicted that prompt's start
    assert len(tree) == 6 and tree.match((1, 2)) == 0 and tree.match((5, 6, 7)) == 3


def key(conversation: int, n: int = 1, session: str | None = None) -> RouteKey:
    system = [{"role": "system", "content": f"agent {conversation}: " + "long instructions " * 150}]
    return RouteKey(session, prefix_blocks(body(turns(n, system))))


def test_new_conversations_spread_and_later_turns_follow_their_prefix() -> None:
    rule = Affinity(load_threshold=2, capacity=10_000)
    firsts = {}
    for conversation in range(6):
        choice = rule.choose(["a", "b"], key(conversation))
        assert choice.reason == "fallback"
        rule.routed(choice.replica, key(conversation), choice)
        rule.completed(choice.replica)
        firsts[conversation] = choice.replica
    assert sorted(firsts.values()) == ["a"] * 3 + ["b"] * 3
    for conversation in range(6):
        choice = rule.choose(["a", "b"], key(conversation, 3))
        assert (choice.replica, choice.reason) == (firsts[conversation], "prefix")
        rule.routed(choice.replica, key(conversation, 3), choice)
    assert rule.counts() == {"fallback": 6, "prefix": 6}
    assert {r: v.prefix_hits for r, v in rule.views().items()} == {"a": 3, "b": 3}


def test_a_session_hint_wins_over_the_prefix() -> None:
    rule = Affinity(load_threshold=2, capacity=10_000)
    rule.routed("a", key(1), None)
    rule.routed("b", RouteKey("s1"), None)
    assert rule.choose(["a", "b"], key(1, 2, session="s1")).replica == "b"
    assert rule.choose(["a", "b"], key(1, 2, session="other")).reason == "prefix"


def test_affinity_yields_to_a_queue_beyond_the_threshold() -> None:
    """Requests beyond a replica's slots wait for one: up to 2 more than elsewhere may wait for the cache."""
    rule = Affinity(load_threshold=2, capacity=10_000, slots=2)
    rule.routed("a", key(1), None)
    rule.completed("a")
    for _ in range(4):
        rule.routed("a", RouteKey(), None)  # 2 running, 2 waiting
    assert rule.choose(["a", "b"], key(1, 2)).replica == "a"
    rule.routed("a", RouteKey(), None)
    choice = rule.choose(["a", "b"], key(1, 2))
    assert (choice.replica, choice.reason) == ("b", "load")
    assert rule.choose(["a", "b"], key(7)).replica == "b"  # a new conversation: the least loaded
    assert rule.views()["a"].load == 5


def test_a_request_that_went_elsewhere_counts_as_load() -> None:
    """Serve takes the next rank when the chosen replica is full."""
    rule = Affinity(load_threshold=2, capacity=10_000)
    rule.routed("a", key(1), None)
    choice = rule.choose(["a", "b"], key(1, 2))
    rule.routed("b", key(1, 2), choice)
    assert rule.counts()["load"] == 2  # the first one had no choice either
    assert rule.choose(["a", "b"], key(1, 3)).replica == "b"  # the longer prefix is on b now


def test_a_gone_replica_takes_its_prefixes_and_sessions_with_it() -> None:
    rule = Affinity(load_threshold=2, capacity=10_000)
    rule.routed("a", key(1, session="s"), None)
    rule.assign(rule.choose(["a", "b"], key(2)))
    rule.serving({"b", "c"})
    assert set(rule.views()) == {"b"} and not rule.sessions and rule.replicas == 2
    assert rule.busy("a") == 0 and rule.busy("b") == 1
    choice = rule.choose(["b", "c"], key(1, 2, session="s"))
    assert choice.reason == "fallback"


def test_a_burst_of_new_sessions_spreads_before_any_reaches_its_replica() -> None:
    """Serve reports a request routed only once its replica accepted it: until then the router's own choices
    are the load it knows of."""
    rule = Affinity(load_threshold=2, capacity=10_000, slots=4)
    choices = []
    for conversation in range(8):
        choice = rule.choose(["a", "b"], key(conversation))
        rule.assign(choice)
        choices.append(choice)
    assert sorted(c.replica for c in choices) == ["a"] * 4 + ["b"] * 4
    assert {c.reason for c in choices} == {"fallback"}
    for conversation, choice in enumerate(choices):  # they arrive: on their way no more, running now
        rule.routed(choice.replica, key(conversation), choice)
    assert (rule.assigned["a"], rule.assigned["b"], rule.load["a"], rule.load["b"]) == (0, 0, 4, 4)


def test_a_choice_that_went_nowhere_is_released() -> None:
    rule = Affinity(load_threshold=2, capacity=10_000)
    first = rule.choose(["a", "b"], key(1))
    rule.assign(first)
    assert rule.choose(["a", "b"], key(2)).replica != first.replica
    rule.release(first)  # its client left before a replica took it
    rule.release(first)  # never below nothing
    assert rule.busy(first.replica) == 0


def test_router_memory_is_bounded_by_capacity_and_sessions() -> None:
    rule = Affinity(load_threshold=2, capacity=100)
    for conversation in range(50):
        rule.routed("a", key(conversation, session=f"s{conversation}"), None)
    assert len(rule.trees["a"]) == 100
