"""Which local files and remote URLs a request may make the server read, for media parts.

A server bound to loopback serves its own user, who may name any file they could open
anyway; one reachable from the network reads only under `--media-root`. Remote fetches
never reach loopback, link-local or private addresses (the server must not become a
proxy into the user's network) unless `--allow-private-urls`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

import httpx

from nexa.config import Settings
from nexa.errors import Forbidden, InvalidRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class AccessPolicy:
    """The defaults are a loopback server's: any local file, public URLs only."""

    any_local_path: bool = True
    media_roots: tuple[Path, ...] = ()
    private_urls: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessPolicy:
        return cls(
            any_local_path=settings.loopback(),
            media_roots=tuple(root.expanduser().resolve() for root in settings.media_root),
            private_urls=settings.allow_private_urls,
        )


def check_local_path(path: Path, policy: AccessPolicy) -> Path:
    """The path with links followed, if the policy lets a request read it; else Forbidden.
    The caller opens the returned path, so a link swapped in later cannot lead elsewhere."""
    resolved = path.expanduser().resolve()
    if policy.any_local_path or any(resolved.is_relative_to(root) for root in policy.media_roots):
        return resolved
    where = (
        "under the media roots " + ", ".join(str(r) for r in policy.media_roots)
        if policy.media_roots else "at all, as the server is reachable from the network"
    )
    raise Forbidden(
        f"the server may not read {path}: local media paths are allowed only {where}; send the file as a "
        "data: URI, or start nexa serve with --media-root FOLDER (or bind it to 127.0.0.1)",
        code="media_path_forbidden",
    )


def refused_address(address: IPAddress) -> bool:
    """Loopback, link-local (cloud metadata at 169.254.169.254), private, and the other non-public ranges."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


async def check_remote_url(url: str | httpx.URL, policy: AccessPolicy) -> None:
    """Refuse a URL that is not http(s) or whose host resolves to any refused address.
    Call it for every redirect hop: a public URL may redirect into the private network."""
    url = httpx.URL(url)
    if url.scheme not in ("http", "https"):
        raise Forbidden(f"media URLs must be http or https, not {url.scheme or 'schemeless'}: {url}", code="media_url_forbidden")
    if policy.private_urls:
        return
    for address in await _addresses(url.host, url.port or (443 if url.scheme == "https" else 80)):
        if refused_address(address):
            raise Forbidden(
                f"{url} resolves to {address}, a loopback, link-local or private address; the server fetches "
                "only public URLs unless started with --allow-private-urls",
                code="media_url_forbidden",
            )


def check_peer(url: httpx.URL, response: httpx.Response, policy: AccessPolicy) -> None:
    """Refuse an answer from a refused address, before reading it: the host may have resolved to a public
    address for `check_remote_url` and to a private one when the connection was made (DNS rebinding)."""
    if policy.private_urls:
        return
    stream = response.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    try:
        address = ipaddress.ip_address(str(peer[0]).split("%")[0]) if peer else None
    except ValueError:
        address = None
    if address is None or refused_address(address):
        raise Forbidden(
            f"{url} was answered from {address or 'an unknown address'}, a loopback, link-local or private "
            "address (its name resolved to another address when checked); the server fetches only public URLs "
            "unless started with --allow-private-urls",
            code="media_url_forbidden",
        )


async def _addresses(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InvalidRequest(f"the media host {host} cannot be resolved ({exc.strerror}); check the URL") from None
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
