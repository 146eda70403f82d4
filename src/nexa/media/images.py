"""Images checked and converted for the engine, with the router's memory bounded.

A decode allocates width x height x 4 bytes, and the allocator rarely hands that back: one
49-megapixel PNG grew the router by 150 MB for good. So an image over IN_PROCESS_PIXELS is
decoded in a short-lived child process that takes its memory with it when it exits, and at
most CHILDREN such decodes run at once. This module imports only Pillow, so a child starts fast.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import threading

from PIL import Image

MAX_PIXELS = 50_000_000  # more than any camera's photo; the engine downscales to a few hundred pixels anyway
IN_PROCESS_PIXELS = 4_000_000  # 16 MB decoded: fine in the router
CHILDREN = 2
# What llama.cpp's image loader (stb_image) decodes; anything else Pillow reads is sent as PNG.
_ENGINE_IMAGES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "BMP": "image/bmp"}
_children = threading.BoundedSemaphore(CHILDREN)  # taken in the decoding thread: no event loop to bind to


class ImageProblem(Exception):
    """The image cannot be sent to the engine; the message says why, for the client."""


def engine_image(data: bytes) -> tuple[bytes, str]:
    """(bytes, mime) the engine can decode: checked by decoding it, converted to PNG if needed (WebP...)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            _check_size(image)
            image.load()  # a full decode: truncated or corrupt files fail here, not in the engine
            if image.format in _ENGINE_IMAGES:
                return data, _ENGINE_IMAGES[image.format]
            if image.mode not in ("RGB", "RGBA", "L", "LA"):
                image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
            out = io.BytesIO()
            image.save(out, "PNG")
            return out.getvalue(), "image/png"
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageProblem(f"the image cannot be decoded ({exc.__class__.__name__}); send JPEG, PNG, WebP or GIF") from None


def _check_size(image: Image.Image) -> None:
    # A few KiB of PNG can declare gigapixels: refuse by the header, before decoding allocates them.
    if image.width * image.height > MAX_PIXELS:
        raise ImageProblem(
            f"the image is {image.width}x{image.height} pixels, over {MAX_PIXELS // 1_000_000} megapixels; "
            "send a smaller image"
        )


def _pixels(data: bytes) -> int:
    """Width x height from the header alone (0 if unreadable: the full check then says why)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.width * image.height
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return 0


def _decode_in_child(data: bytes) -> tuple[bytes, str]:
    """engine_image in `python -m nexa.media.images`: the image on stdin; the mime line and the bytes on
    stdout, or exit code 2 and the problem on stderr."""
    with _children:
        child = subprocess.run([sys.executable, "-m", __name__], input=data, capture_output=True, check=False)
    if child.returncode == 2:
        raise ImageProblem(child.stderr.decode(errors="replace").strip())
    if child.returncode != 0:
        raise ImageProblem(f"the image could not be checked (the decoder exited with code {child.returncode})")
    mime, _, image = child.stdout.partition(b"\n")
    return image, mime.decode()


async def checked_image(data: bytes) -> tuple[bytes, str]:
    """engine_image off the event loop: in a thread for small images, in a child process for large ones."""
    if await asyncio.to_thread(_pixels, data) <= IN_PROCESS_PIXELS:
        return await asyncio.to_thread(engine_image, data)
    return await asyncio.to_thread(_decode_in_child, data)


def _main() -> int:
    try:
        image, mime = engine_image(sys.stdin.buffer.read())
    except ImageProblem as exc:
        sys.stderr.write(str(exc))
        return 2
    sys.stdout.buffer.write(mime.encode() + b"\n" + image)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
