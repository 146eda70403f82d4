"""Which replica should take a request: the one holding its conversation (a session hint), else the one
holding the longest leading part of its prompt, unless that replica is too much busier than the least
busy one. Pure and thread-safe, so the rule is tested without Ray; nexa.cluster.routing plugs it into
Ray Serve's request router.

A prompt is keyed by its engine body from the conversation on (`"messages":` or `"prompt":`), cut into
blocks of BLOCK bytes, each hashed together with the one before it: block i's hash names the whole
prefix up to it, so a replica's prefix tree is just the set of the hashes it was sent, and a prompt's
match is how many of its leading hashes the set holds. Each set is bounded (least recently used out),
as the replica's own caches are, so the index forgets what the replica has evicted."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Literal

BLOCK = 512  # bytes of JSON, about 120 tokens: the grain of a prefix match
MAX_BLOCKS = 8192  # a prompt's first 4 MiB are keyed; what follows cannot change the choice much
SESSIONS = 65536  # session hints remembered, least recently used out
_KEYS = (b'"messages":', b'"prompt":')

Reason = Literal["session", "prefix", "load", "fallback"]


def prefix_blocks(body: bytes | None) -> tuple[int, ...]:
    """The chained block hashes of a generation body's conversation; () for a body without one.

    The body is the JSON nexa sends the engine, whose conversation comes last. Strings inside JSON are
    escaped, so the last unescaped `"messages":` is the top-level key (a tool schema may name one too)."""
    if not body:
        return ()
    start = max(body.rfind(key) for key in _KEYS)
    if start < 0:
        return ()
    hashes: list[int] = []
    previous = b""
    end = min(len(body), start + BLOCK * MAX_BLOCKS)
    # Only whole blocks: the last, partial one holds the request's own tail (its closing brackets).
    for at in range(start, end - BLOCK + 1, BLOCK):
        previous = hashlib.blake2b(previous + body[at:at + BLOCK], digest_size=8).digest()
        hashes.append(int.from_bytes(previous, "little"))
    return tuple(hashes)


@dataclass(frozen=True)
class RouteKey:
    """What the router knows of a request: the client's session hint and its prompt's block hashes."""

    session: str | None = None
    blocks: tuple[int, ...] = ()
    probe: bool = False  # the router's own look at a replica (/v1/ps): no decision, no load


class PrefixTree:
    """The prefixes one replica was sent, as chained block hashes, least recently used first out."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._blocks: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    def match(self, blocks: tuple[int, ...]) -> int:
        """How many leading blocks of `blocks` this replica holds."""
        matched = 0
        for block in blocks:
            if block not in self._blocks:
                break
            matched += 1
        return matched

    def add(self, blocks: tuple[int, ...]) -> None:
        for block in blocks:
            self._blocks[block] = None
            self._blocks.move_to_end(block)
        while len(self._blocks) > self.capacity:
            self._blocks.popitem(last=False)


@dataclass(frozen=True)
class Choice:
    replica: str
    reason: Reason


@dataclass
class ReplicaView:
    """What /v1/ps and /metrics show of a replica's routing state."""

    load: int
    cached_prefixes: int
    prefix_hits: int


@dataclass
class Affinity:
    """The routing state of one model's replicas: their prefix trees, in-flight counts and the sessions
    they hold, and counters of the decisions made. Serve's routing loop writes it, /metrics reads it.

    A replica's load is what it runs and holds waiting (`load`, from Serve's routed/completed callbacks)
    plus the requests chosen for it that have not reached it yet (`assigned`): Serve tells the router a
    request was routed only once the replica accepted it, and without counting its own choices until then,
    a burst of new requests would all go to the replica that looked least loaded when the burst began."""

    load_threshold: int
    capacity: int  # blocks per replica
    slots: int = 1  # requests a replica runs at once
    trees: dict[str, PrefixTree] = field(default_factory=dict)
    load: Counter[str] = field(default_factory=Counter)
    assigned: Counter[str] = field(default_factory=Counter)
    replicas: int = 0  # replicas serving now, as Serve last told the router
    sessions: OrderedDict[str, str] = field(default_factory=OrderedDict)
    decisions: Counter[str] = field(default_factory=Counter)
    hits: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def busy(self, replica: str) -> int:
        """Requests the replica runs or holds, and those on their way to it."""
        return self.load[replica] + self.assigned[replica]

    def waiting(self, replica: str) -> int:
        """Requests the replica holds beyond its slots: they wait in its engine for one to free."""
        return max(0, self.busy(replica) - self.slots)

    def choose(self, replicas: list[str], key: RouteKey) -> Choice:
        """The rule: the session's replica, else the one with the longest prefix match (the less loaded among
        equals); either yields to the least loaded replica when more than `load_threshold` requests wait on it
        than on that one. Without either, the least loaded."""
        with self._lock:
            # Among equally loaded replicas, the one holding least: new conversations spread out.
            least = min(replicas, key=lambda r: (self.busy(r), len(self._tree(r))))
            preferred = self.sessions.get(key.session) if key.session is not None else None
            reason: Reason = "session"
            if preferred not in replicas:
                matches = {r: self._tree(r).match(key.blocks) for r in replicas}
                preferred = max(replicas, key=lambda r: (matches[r], -self.busy(r)))
                if not matches[preferred]:
                    return Choice(least, "fallback")
                reason = "prefix"
            if self.waiting(preferred) - self.waiting(least) > self.load_threshold:
                return Choice(least, "load")
            return Choice(preferred, reason)

    def assign(self, choice: Choice) -> None:
        """A request is on its way to `choice.replica`: load there until `routed` or `release` says otherwise."""
        with self._lock:
            self.assigned[choice.replica] += 1

    def release(self, choice: Choice) -> None:
        """The request assigned by `choice` is no longer on its way (routed, chosen again, or cancelled)."""
        with self._lock:
            self._release(choice)

    def routed(self, replica: str, key: RouteKey, choice: Choice | None, running: bool = True) -> None:
        """The request went to `replica` (and is in flight there unless it has already ended): Serve takes
        the next rank when the chosen one is full, which is load too. Its prefix and session now live there.
        `choice` is the router's (assigned) choice for it, None when it made none."""
        with self._lock:
            if choice is not None:
                self._release(choice)
            if key.probe:
                return
            self.decisions[choice.reason if choice is not None and choice.replica == replica else "load"] += 1
            tree = self._tree(replica)
            if tree.match(key.blocks):
                self.hits[replica] += 1
            tree.add(key.blocks)
            self.load[replica] += running
            if key.session is not None:
                self.sessions[key.session] = replica
                self.sessions.move_to_end(key.session)
                while len(self.sessions) > SESSIONS:
                    self.sessions.popitem(last=False)

    def completed(self, replica: str) -> None:
        with self._lock:
            if self.load[replica] > 0:
                self.load[replica] -= 1

    def serving(self, replicas: set[str]) -> None:
        """These replicas serve now. Any other is gone: its caches went with it, and so do its sessions."""
        with self._lock:
            self.replicas = len(replicas)
            for replica in set(self.trees) - replicas:
                del self.trees[replica]
                self.load.pop(replica, None)
                self.assigned.pop(replica, None)
            for session in [s for s, r in self.sessions.items() if r not in replicas]:
                del self.sessions[session]

    def views(self) -> dict[str, ReplicaView]:
        with self._lock:
            return {r: ReplicaView(self.load[r], len(t), self.hits[r]) for r, t in self.trees.items()}

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.decisions)

    def _release(self, choice: Choice) -> None:
        if self.assigned[choice.replica] > 0:
            self.assigned[choice.replica] -= 1

    def _tree(self, replica: str) -> PrefixTree:
        tree = self.trees.get(replica)
        if tree is None:
            tree = self.trees[replica] = PrefixTree(self.capacity)
        return tree


_AFFINITIES: dict[str, Affinity] = {}  # Serve application -> its routing state, in the ingress process


def shared_affinity(app: str, load_threshold: int, capacity: int, slots: int) -> Affinity:
    """The routing state of `app`, made on its router's start; a redeployed app keeps what is still true."""
    affinity = _AFFINITIES.setdefault(app, Affinity(load_threshold, capacity, slots))
    affinity.load_threshold, affinity.capacity, affinity.slots = load_threshold, capacity, slots
    return affinity


def affinity_of(app: str) -> Affinity | None:
    """For /metrics and /v1/ps: None until the model's first request made its router."""
    return _AFFINITIES.get(app)
