"""What media a request may make the server read: local paths and remote addresses."""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from nexa.media import policy as media_policy
from nexa.media import resolve as media_resolve
from nexa.media.resolve import MediaPolicy, fetch_remote, read_local_file
from nexa.media.policy import AccessPolicy, check_local_path, check_remote_url, refused_address
from nexa.config import Settings
from nexa.errors import Forbidden, InvalidRequest

NETWORK = AccessPolicy(any_local_path=False)


def test_policy_follows_the_bind_address_and_flags(tmp_path):
    assert AccessPolicy.from_settings(Settings(host="127.0.0.1")).any_local_path
    remote = AccessPolicy.from_settings(Settings(host="0.0.0.0", media_root=[tmp_path], allow_private_urls=True))
    assert (remote.any_local_path, remote.media_roots, remote.private_urls) == (False, (tmp_path.resolve(),), True)


def test_loopback_server_reads_any_local_path(tmp_path):
    assert check_local_path(tmp_path / "a.png", AccessPolicy()) == (tmp_path / "a.png").resolve()


def test_network_server_refuses_local_paths_and_says_how_to_allow_them(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret contents")
    with pytest.raises(Forbidden) as info:
        check_local_path(secret, NETWORK)
    assert "--media-root" in info.value.message and "top secret" not in info.value.message


def test_network_server_reads_under_a_media_root(tmp_path):
    root = tmp_path / "media"
    (root / "sub").mkdir(parents=True)
    policy = AccessPolicy(any_local_path=False, media_roots=(root.resolve(),))
    assert check_local_path(root / "sub" / "cat.png", policy) == (root / "sub" / "cat.png").resolve()
    with pytest.raises(Forbidden):
        check_local_path(root / ".." / "outside.png", policy)


def test_a_link_out_of_the_media_root_is_refused(tmp_path):
    root = tmp_path / "media"
    root.mkdir()
    (tmp_path / "private.png").write_bytes(b"x")
    (root / "link.png").symlink_to(tmp_path / "private.png")
    with pytest.raises(Forbidden):
        check_local_path(root / "link.png", AccessPolicy(any_local_path=False, media_roots=(root.resolve(),)))


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("127.0.0.1", True), ("10.1.2.3", True), ("172.16.0.1", True), ("192.168.1.1", True),
        ("169.254.169.254", True), ("0.0.0.0", True), ("100.64.0.1", True), ("::1", True), ("fe80::1", True),
        ("fd00::1", True), ("::ffff:127.0.0.1", True), ("224.0.0.1", True),
        ("93.184.216.34", False), ("2606:4700::1111", False),
    ],
)
def test_non_public_addresses_are_refused(address, refused):
    assert refused_address(ipaddress.ip_address(address)) is refused


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/x.png", "http://localhost/x.png", "http://[::1]/x.png", "http://169.254.169.254/latest",
     "http://10.0.0.8/cat.png"],
)
def test_remote_fetches_into_the_private_network_are_refused(url):
    with pytest.raises(Forbidden) as info:
        asyncio.run(check_remote_url(url, AccessPolicy()))
    assert "--allow-private-urls" in info.value.message


def test_allow_private_urls_lets_them_through():
    asyncio.run(check_remote_url("http://127.0.0.1:8080/x.png", AccessPolicy(private_urls=True)))


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x.png", "gopher://example.com/"])
def test_only_http_and_https_urls_are_fetched(url):
    with pytest.raises(Forbidden):
        asyncio.run(check_remote_url(url, AccessPolicy(private_urls=True)))


def test_a_public_address_passes():
    asyncio.run(check_remote_url("https://93.184.216.34/cat.png", AccessPolicy()))


def test_an_unresolvable_host_is_a_clear_400():
    with pytest.raises(InvalidRequest):
        asyncio.run(check_remote_url("http://no-such-host.invalid/x.png", AccessPolicy()))


def test_settings_read_media_roots_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("NEXA_MEDIA_ROOT", f"{tmp_path}/a:{tmp_path}/b")
    assert Settings().media_root == [Path(f"{tmp_path}/a"), Path(f"{tmp_path}/b")]


def test_every_redirect_hop_is_checked(monkeypatch):
    """A URL that passes may redirect into the private network: the next hop is refused."""

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server API)
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.2:{self.server.server_address[1]}/inside.png")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    # Pretend 127.0.0.1 is public, so that only the redirect's target is refused.
    monkeypatch.setattr(media_policy, "refused_address", lambda address: str(address) == "127.0.0.2")
    try:
        with pytest.raises(Forbidden) as info:
            asyncio.run(fetch_remote(f"http://127.0.0.1:{httpd.server_address[1]}/outside.png", MediaPolicy()))
        assert "127.0.0.2" in info.value.message
    finally:
        httpd.shutdown()


def test_a_name_that_resolves_elsewhere_when_connecting_is_refused_before_reading(monkeypatch):
    """DNS rebinding: the check sees a public address, the connection reaches loopback."""
    served: list[str] = []

    class Inside(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server API)
            served.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "6")
            self.end_headers()
            self.wfile.write(b"secret")

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Inside)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    async def public(host: str, port: int) -> list:
        return [ipaddress.ip_address("93.184.216.34")]

    monkeypatch.setattr(media_policy, "_addresses", public)  # the first answer of a rebinding name
    try:
        with pytest.raises(Forbidden) as info:
            asyncio.run(fetch_remote(f"http://localhost:{httpd.server_address[1]}/cat.png", MediaPolicy()))
        assert "127.0.0.1" in info.value.message and info.value.code == "media_url_forbidden"
    finally:
        httpd.shutdown()


def test_a_folder_swapped_for_a_link_after_the_check_is_refused(tmp_path, monkeypatch):
    """The path is checked, then a folder on it becomes a link out of the media root before the open: the opened
    file's real place is checked again (O_NOFOLLOW guards only the last step)."""
    root, outside = tmp_path / "media", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "sub" / "cat.png").write_bytes(b"harmless")
    (outside / "cat.png").write_bytes(b"private")
    policy = MediaPolicy(access=AccessPolicy(any_local_path=False, media_roots=(root.resolve(),)))
    assert read_local_file(root / "sub" / "cat.png", policy) == b"harmless"

    def check_then_swap(path: Path, access: AccessPolicy) -> Path:
        checked = check_local_path(path, access)
        (root / "sub" / "cat.png").unlink()
        (root / "sub").rmdir()
        (root / "sub").symlink_to(outside)
        return checked

    monkeypatch.setattr(media_resolve, "check_local_path", check_then_swap)
    with pytest.raises(Forbidden):
        read_local_file(root / "sub" / "cat.png", policy)
