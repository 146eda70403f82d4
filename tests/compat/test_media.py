"""Media normalisation without a server: sources, decoding, capability checks, error locations."""

from __future__ import annotations

import asyncio
import base64
import io
import os
from pathlib import Path

import pytest
from PIL import Image

from nexa.media.resolve import (
    MediaPolicy,
    MediaProblem,
    audio_format,
    load_source,
    local_path,
    parse_data_uri,
    read_local_file,
    resolve_media,
)
from nexa.media.images import ImageProblem, checked_image, engine_image
from nexa.media.policy import AccessPolicy
from nexa.errors import Forbidden, InvalidRequest
from nexa.wire.openai import ChatMessage
from nexa.store import Manifest, ModelType
from nexa.store.manifest import FileEntry, QuantEntry
from tests.fixtures.media_samples import image_bytes, mp3_bytes, wav_bytes

POLICY = MediaPolicy()


def run(coro):
    return asyncio.run(coro)


def test_data_uris_decode_base64_and_percent_encoding():
    assert parse_data_uri("data:image/png;base64,aGVsbG8=") == b"hello"
    assert parse_data_uri("data:image/png;base64,aGVs\nbG8=") == b"hello"
    assert parse_data_uri("data:text/plain,a%20b") == b"a b"
    with pytest.raises(MediaProblem, match="base64"):
        parse_data_uri("data:image/png;base64,@@@")
    with pytest.raises(MediaProblem, match="','"):
        parse_data_uri("data:image/png;base64")


def test_local_references_are_absolute_home_or_file_urls(tmp_path):
    assert local_path("/a/b.png") == Path("/a/b.png")
    assert local_path("~/b.png") == Path.home() / "b.png"
    assert local_path("file:///a/my%20b.png") == Path("/a/my b.png")
    assert local_path("file://localhost/a.png") == Path("/a.png")
    assert local_path("b.png") is None
    with pytest.raises(MediaProblem, match="another host"):
        local_path("file://server/a.png")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP"])
def test_formats_the_engine_decodes_pass_unchanged(fmt):
    data = image_bytes(fmt)
    assert engine_image(data) == (data, f"image/{fmt.lower()}")


def test_webp_and_other_formats_become_png():
    for fmt in ("WEBP", "TIFF"):
        data, mime = engine_image(image_bytes(fmt))
        assert mime == "image/png"
        assert Image.open(io.BytesIO(data)).format == "PNG"


def test_cmyk_images_are_converted_before_png():
    out = io.BytesIO()
    Image.new("CMYK", (8, 8)).save(out, "TIFF")
    assert engine_image(out.getvalue())[1] == "image/png"


@pytest.mark.parametrize("data", [b"not an image", image_bytes("PNG")[:60]])
def test_undecodable_or_truncated_images_are_refused(data):
    with pytest.raises(ImageProblem, match="cannot be decoded"):
        engine_image(data)


def _rss_mib() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 >> 20


def test_a_large_image_is_decoded_in_a_child_and_the_router_keeps_no_memory_for_it():
    out = io.BytesIO()
    Image.new("RGB", (7000, 7000), (10, 200, 30)).save(out, "PNG")  # 49 megapixels: 196 MB decoded
    data = out.getvalue()
    before = _rss_mib()
    assert asyncio.run(checked_image(data)) == (data, "image/png")
    assert _rss_mib() - before < 50  # was +144 MiB for good, decoded in a thread here
    webp = io.BytesIO()
    Image.new("RGB", (2100, 2000)).save(webp, "WEBP")
    with pytest.raises(ImageProblem, match="cannot be decoded"):  # problems cross the process boundary
        asyncio.run(checked_image(webp.getvalue()[:200]))


def test_audio_format_is_read_from_the_bytes():
    assert audio_format(wav_bytes()) == "wav"
    assert audio_format(mp3_bytes()) == "mp3"
    assert audio_format(b"ID3\x04rest") == "mp3"
    assert audio_format(b"fLaC\x00\x00") == "flac"
    with pytest.raises(MediaProblem, match="WAV, MP3 or FLAC"):
        audio_format(b"OggS....")


def test_local_files_are_read_within_the_size_limit(tmp_path):
    small = tmp_path / "a.bin"
    small.write_bytes(b"12345")
    assert read_local_file(small, POLICY) == b"12345"
    with pytest.raises(MediaProblem, match="over the 0 MiB limit"):
        read_local_file(small, MediaPolicy(max_bytes=4))
    with pytest.raises(MediaProblem, match="no file at"):
        read_local_file(tmp_path / "missing.png", POLICY)
    with pytest.raises(MediaProblem, match="not a file"):
        read_local_file(tmp_path, POLICY)


def test_local_files_obey_the_access_policy(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(Forbidden):
        read_local_file(tmp_path / "a.png", MediaPolicy(access=AccessPolicy(any_local_path=False)))


def test_relative_paths_and_other_schemes_are_refused():
    for ref in ("cat.png", "ftp://example.com/cat.png"):
        with pytest.raises(MediaProblem, match="not a data: URI"):
            run(load_source(ref, POLICY))


def test_inline_data_over_the_limit_is_refused():
    uri = "data:image/png;base64," + base64.b64encode(b"x" * 10).decode()
    with pytest.raises(MediaProblem, match="limit"):
        run(load_source(uri, MediaPolicy(max_bytes=5)))


def _manifest(tmp_path: Path, mmproj: str | None, tiny_dir: Path) -> Manifest:
    weights = FileEntry(name="m.gguf", size=1, sha256="0", path=str(tiny_dir / "qwen3-script-text.gguf"))
    projector = FileEntry(name=mmproj, size=1, sha256=mmproj, path=str(tiny_dir / mmproj)) if mmproj else None
    return Manifest(name="org/m", model_type=ModelType.vlm if mmproj else ModelType.llm,
                    quants={"F32": QuantEntry(files=[weights])}, mmproj=projector, source="test")


def _image_message(ref: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=[{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": ref}])]


def test_images_become_data_uris_the_engine_decodes(tmp_path, tiny_dir):
    path = tmp_path / "cat.webp"
    path.write_bytes(image_bytes("WEBP"))
    manifest = _manifest(tmp_path, "mmproj-gemma3.gguf", tiny_dir)
    (message,) = run(resolve_media(_image_message(str(path)), manifest, tmp_path, POLICY))
    assert message.content[0].text == "hi"
    url = message.content[1].image_url.url
    assert url.startswith("data:image/png;base64,") and engine_image(parse_data_uri(url))[1] == "image/png"


def test_audio_is_labelled_by_its_bytes_not_the_client(tmp_path, tiny_dir):
    wav = base64.b64encode(wav_bytes()).decode()
    messages = [ChatMessage(role="user", content=[{"type": "input_audio", "input_audio": {"data": wav, "format": "mp3"}}])]
    manifest = _manifest(tmp_path, "mmproj-qwen2a.gguf", tiny_dir)
    (message,) = run(resolve_media(messages, manifest, tmp_path, POLICY))
    assert (message.content[0].input_audio.format, message.content[0].input_audio.data) == ("wav", wav)


def test_text_only_messages_are_returned_as_they_are(tmp_path, tiny_dir):
    messages = [ChatMessage(role="user", content="hi")]
    assert run(resolve_media(messages, _manifest(tmp_path, None, tiny_dir), tmp_path, POLICY)) is messages


def test_errors_name_the_part_and_the_missing_capability(tmp_path, tiny_dir):
    with pytest.raises(InvalidRequest) as info:
        run(resolve_media(_image_message("/nope.png"), _manifest(tmp_path, None, tiny_dir), tmp_path, POLICY))
    assert info.value.param == "messages[0].content[1]"
    assert "cannot read images" in info.value.message and "org/m" in info.value.message
    with pytest.raises(InvalidRequest, match="no file at"):
        run(resolve_media(_image_message("/nope.png"), _manifest(tmp_path, "mmproj-mlp.gguf", tiny_dir), tmp_path, POLICY))


EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n%%EndComments\n"
       b"newpath 0 0 moveto 8 0 lineto 8 8 lineto closepath fill\nshowpage\n%%EOF\n")


def test_only_the_documented_formats_are_opened_so_eps_never_reaches_ghostscript(monkeypatch):
    from PIL import EpsImagePlugin

    assert Image.open(io.BytesIO(EPS)).format == "EPS"  # Pillow alone would take it (and run Ghostscript)
    ran: list[object] = []
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *args, **kwargs: ran.append(args))
    for decode in (engine_image, lambda data: asyncio.run(checked_image(data))):
        with pytest.raises(ImageProblem, match="send JPEG, PNG, WebP"):
            decode(EPS)
    assert ran == []


def test_a_local_file_is_read_from_its_descriptor_up_to_the_cap(tmp_path, monkeypatch):
    policy = MediaPolicy(max_bytes=1000)
    big = tmp_path / "big.png"
    big.write_bytes(b"x" * 1001)
    with pytest.raises(MediaProblem, match="over the"):
        read_local_file(big, policy)
    # A file that reports size 0 is read up to the cap, not whole (it may never end).
    assert Path("/proc/self/maps").stat().st_size == 0
    with pytest.raises(MediaProblem, match="over the"):
        read_local_file(Path("/proc/self/maps"), MediaPolicy(max_bytes=100))
    with pytest.raises(MediaProblem, match="is not a file"):
        read_local_file(Path("/dev/zero"), policy)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # no writer: opening it must not wait
    with pytest.raises(MediaProblem, match="is not a file"):
        read_local_file(fifo, policy)
    small = tmp_path / "small.png"
    small.write_bytes(b"y" * 1000)
    assert read_local_file(small, policy) == b"y" * 1000


def test_a_child_decoder_that_hangs_is_stopped(monkeypatch, tmp_path):
    from nexa.media import images

    hangs = tmp_path / "python"
    hangs.write_text("#!/bin/sh\nexec sleep 30\n")  # a decoder stuck on its input
    hangs.chmod(0o755)
    monkeypatch.setattr(images, "CHILD_TIMEOUT", 1.0)
    monkeypatch.setattr(images.sys, "executable", str(hangs))
    with pytest.raises(ImageProblem, match="longer than 1 s"):
        images._decode_in_child(b"")
