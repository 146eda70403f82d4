"""Images and audio in chat messages → the forms the engine reads, with every byte checked here.

Clients may send media as data: URIs, http(s) URLs or paths on the server (absolute, `~`
or `file://`), in OpenAI's object forms or Nexa's plain strings. The engine gets only
inline data: images as `data:image/...` URIs in a format it decodes, audio as base64
with its real format. It never sees a URL or a path, so it never fetches or reads
anything itself.

Nothing else reads media but two functions, both driven by `MediaPolicy`:
`read_local_file(path, policy)` for local paths and `fetch_remote(url, policy)` for URLs,
every redirect hop included. They apply the access rules of `nexa.media.policy`
(local paths only on loopback or under --media-root, no private addresses) and the
size and time limits.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import fcntl
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, unquote_to_bytes, urlsplit

import httpx

from nexa.media.images import ImageProblem, checked_image
from nexa.media.policy import AccessPolicy, check_local_path, check_peer, check_remote_url
from nexa.config import Settings
from nexa.errors import Forbidden, InvalidRequest
from nexa.wire.openai import AudioPart, ChatMessage, ImagePart, ImageURL, InputAudio, TextPart
from nexa.store import Manifest
from nexa.store.facts import MediaSupport, known_media_support, media_support

MIB = 1 << 20
ContentPart = TextPart | ImagePart | AudioPart


@dataclass(frozen=True)
class MediaPolicy:
    """What the server may read to resolve media; consulted only by `read_local_file` and `fetch_remote`."""

    access: AccessPolicy = field(default_factory=AccessPolicy)
    max_bytes: int = 20 * MIB
    fetch_timeout: float = 10.0
    max_redirects: int = 5

    @classmethod
    def from_settings(cls, settings: Settings) -> MediaPolicy:
        return cls(access=AccessPolicy.from_settings(settings))


class MediaProblem(Exception):
    """A media part cannot be used; `resolve_media` turns it into a 400 naming the part."""


# ---------------------------------------------------------------- reading sources


_F_GETPATH = 50  # macOS's fcntl command for an open file's path


def read_local_file(path: Path, policy: MediaPolicy) -> bytes:
    """Read a media file named by a client: the one place local paths are opened. Raises
    Forbidden when the access policy refuses the path, MediaProblem when it cannot be read."""
    path = check_local_path(path, policy.access)
    try:
        # The opened file is what is checked and read (a link swapped in after the check leads nowhere
        # else), never more than the limit and a byte (a special file may report size 0 and never end).
        with open(path, "rb", buffering=0, opener=_no_follow_no_block) as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise MediaProblem(f"{path} is not a file")
            if (opened := _opened_path(handle.fileno())) is not None and opened != path:
                check_local_path(opened, policy.access)  # a folder on the way was swapped for a link since
            data = handle.read(policy.max_bytes + 1) or b""
            while len(data) <= policy.max_bytes and (more := handle.read(policy.max_bytes + 1 - len(data))):
                data += more
        if len(data) > policy.max_bytes:
            raise MediaProblem(f"{path} is over the {policy.max_bytes // MIB} MiB limit")
        return data
    except IsADirectoryError:
        raise MediaProblem(f"{path} is not a file") from None
    except FileNotFoundError:
        raise MediaProblem(f"no file at {path}; send a path that exists on the server, a URL or a data: URI") from None
    except PermissionError:
        raise MediaProblem(f"the server may not read {path} (permission denied)") from None
    except OSError as exc:
        raise MediaProblem(f"{path} cannot be read ({exc.strerror or exc.__class__.__name__})") from None


def _opened_path(fd: int) -> Path | None:
    """Where the file open as `fd` really is (Linux and macOS say; elsewhere None): O_NOFOLLOW guards only the
    path's last step."""
    try:
        if sys.platform == "darwin":
            return Path(fcntl.fcntl(fd, _F_GETPATH, bytes(1024)).rstrip(b"\0").decode())
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return None


def _no_follow_no_block(path: str, flags: int) -> int:
    """open(2) that follows no link at the last step (the checked path has its links resolved already) and
    does not wait on a FIFO's writer."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK)


async def fetch_remote(url: str, policy: MediaPolicy) -> bytes:
    """GET a media URL within the policy's time and size limits. Redirects are followed here,
    hop by hop, so that the access policy checks every hop (scheme and address)."""
    try:
        return await asyncio.wait_for(_fetch(httpx.URL(url), policy), policy.fetch_timeout)
    except asyncio.TimeoutError:
        raise MediaProblem(f"fetching {url} took longer than {policy.fetch_timeout:g} s") from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise MediaProblem(f"fetching {url} failed ({exc.__class__.__name__}: {exc})") from None


async def _fetch(url: httpx.URL, policy: MediaPolicy) -> bytes:
    async with httpx.AsyncClient(follow_redirects=False, timeout=policy.fetch_timeout) as client:
        for _ in range(policy.max_redirects + 1):
            await check_remote_url(url, policy.access)
            async with client.stream("GET", url) as response:
                check_peer(url, response, policy.access)
                if response.is_redirect:
                    url = response.url.join(response.headers["location"])
                    continue
                if response.status_code >= 400:
                    raise MediaProblem(f"fetching {url} failed: HTTP {response.status_code}")
                return await _read_capped(response, url, policy.max_bytes)
    raise MediaProblem(f"{url} redirected more than {policy.max_redirects} times")


async def _read_capped(response: httpx.Response, url: httpx.URL, limit: int) -> bytes:
    too_big = MediaProblem(f"{url} is larger than the {limit // MIB} MiB limit")
    if int(response.headers.get("content-length") or 0) > limit:
        raise too_big
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) > limit:
            raise too_big
    return bytes(data)


def decode_base64(text: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise MediaProblem("the data is not valid base64") from None


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def parse_data_uri(uri: str) -> bytes:
    """The bytes of a `data:[<mime>][;base64],<payload>` URI (the declared type is not trusted)."""
    header, comma, payload = uri.partition(",")
    if not comma:
        raise MediaProblem("the data: URI has no ',' before its data")
    if header.endswith(";base64"):
        return decode_base64(payload)
    return unquote_to_bytes(payload)


def local_path(ref: str) -> Path | None:
    """The path a reference names (absolute, `~...` or `file://`), or None if it is not a path."""
    if ref.startswith("file://"):
        parts = urlsplit(ref)
        if parts.netloc not in ("", "localhost"):
            raise MediaProblem(f"{ref} names another host; file:// URLs must be local")
        return Path(unquote(parts.path))
    if ref.startswith("~"):
        return Path(ref).expanduser()
    path = Path(ref)
    return path if path.is_absolute() else None


async def load_source(ref: str, policy: MediaPolicy) -> bytes:
    """The bytes behind a media reference: a data: URI, an http(s) URL or a local path."""
    if ref.startswith("data:"):
        data = await asyncio.to_thread(parse_data_uri, ref)  # megabytes of base64: off the event loop
        if len(data) > policy.max_bytes:
            raise MediaProblem(f"the data is over the {policy.max_bytes // MIB} MiB limit")
        return data
    if ref.startswith(("http://", "https://")):
        return await fetch_remote(ref, policy)
    path = local_path(ref)
    if path is None:
        shown = ref if len(ref) <= 80 else ref[:77] + "..."
        raise MediaProblem(
            f"'{shown}' is not a data: URI, an http(s) URL or an absolute path (/..., ~/..., file://...)"
        )
    return await asyncio.to_thread(read_local_file, path, policy)


# ---------------------------------------------------------------- checking content


def audio_format(data: bytes) -> str:
    """wav, mp3 or flac, read from the bytes themselves (clients often mislabel the format)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:4] == b"fLaC":
        return "flac"
    if data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "mp3"
    raise MediaProblem("the audio is not WAV, MP3 or FLAC")


# ---------------------------------------------------------------- messages


def _lacks(support: MediaSupport, what: str, projector: str) -> MediaProblem:
    return MediaProblem(
        f"model '{support.model}' cannot read {what}: it has no {projector} projector (mmproj); "
        f"send text only, or use a model pulled with a projector that reads {what}"
    )


async def _image(part: ImagePart, support: MediaSupport, policy: MediaPolicy) -> ImagePart:
    if not support.image:
        raise _lacks(support, "images", "vision")
    ref = part.image_url.url if isinstance(part.image_url, ImageURL) else part.image_url
    try:
        data, mime = await checked_image(await load_source(ref.strip(), policy))
    except ImageProblem as exc:
        raise MediaProblem(str(exc)) from None
    detail = part.image_url.detail if isinstance(part.image_url, ImageURL) else None
    url = f"data:{mime};base64,{await asyncio.to_thread(_base64, data)}"
    return ImagePart(type="image_url", image_url=ImageURL(url=url, detail=detail))


async def _audio(part: AudioPart, support: MediaSupport, policy: MediaPolicy) -> AudioPart:
    if not support.audio:
        raise _lacks(support, "audio", "audio")
    if isinstance(part.input_audio, InputAudio) and not part.input_audio.data.startswith("data:"):
        data = await asyncio.to_thread(decode_base64, part.input_audio.data)
    else:
        ref = part.input_audio.data if isinstance(part.input_audio, InputAudio) else part.input_audio
        data = await load_source(ref.strip(), policy)
    audio = InputAudio(data=await asyncio.to_thread(_base64, data), format=audio_format(data))
    return AudioPart(type="input_audio", input_audio=audio)


async def _resolve_part(part: ContentPart, support: MediaSupport, policy: MediaPolicy) -> ContentPart:
    if isinstance(part, ImagePart):
        return await _image(part, support, policy)
    if isinstance(part, AudioPart):
        return await _audio(part, support, policy)
    return part


def _has_media(message: ChatMessage) -> bool:
    return isinstance(message.content, list) and any(isinstance(p, (ImagePart, AudioPart)) for p in message.content)


async def model_media(manifest: Manifest, model_dir: Path) -> MediaSupport:
    """What the model's projector reads: from memory once its header was read, else read in a thread (a
    request skips a thread hop for what it almost always knows)."""
    return known_media_support(manifest, model_dir) or await asyncio.to_thread(media_support, manifest, model_dir)


async def resolve_media(
    messages: list[ChatMessage], manifest: Manifest, model_dir: Path, policy: MediaPolicy
) -> list[ChatMessage]:
    """The messages with every image and audio part inline and checked. Raises InvalidRequest
    naming the first bad part (e.g. `messages[0].content[1]`) before any model is loaded."""
    if not any(_has_media(m) for m in messages):
        return messages
    support = await model_media(manifest, model_dir)
    resolved = []
    for i, message in enumerate(messages):
        if not _has_media(message):
            resolved.append(message)
            continue
        parts = []
        for j, part in enumerate(message.content):
            where = f"messages[{i}].content[{j}]"
            try:
                parts.append(await _resolve_part(part, support, policy))
            except MediaProblem as exc:
                raise InvalidRequest(f"{where}: {exc}", param=where, code="invalid_media") from None
            except (InvalidRequest, Forbidden) as exc:  # from the access policy
                raise type(exc)(f"{where}: {exc.message}", param=where, code=exc.code) from None
        resolved.append(message.model_copy(update={"content": parts}))
    return resolved
