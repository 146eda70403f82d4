"""Multipart forms: OpenAI's audio uploads, read whole into memory with python-multipart's parser, and the
forms the router sends the engine.

Starlette's `request.form()` hands each file to a SpooledTemporaryFile in an awaited write per chunk and
builds an UploadFile, its headers and a FormData around it: 0.58 ms of CPU more than this reader for a 20 s
WAV (640 kB) in a microbench, on the cores the engine needs. Here each part's bytes are kept as slices of
the chunks that held them and joined once. The whole body's size is bounded before it gets here (the
BodyLimit middleware); the number of parts and the size of a text field are bounded here."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from nexa.errors import InvalidRequest

MAX_PARTS = 64  # OpenAI's audio forms have at most a dozen
MAX_FIELD_BYTES = 64 * 1024  # a text field (a prompt of 4000 characters is 16 kB at most)


@dataclass(frozen=True)
class Upload:
    """A file part."""

    filename: str
    content_type: str
    data: bytes


@dataclass
class Form:
    """A form's text fields and files, by name; a name sent twice keeps its last part, as Starlette's does."""

    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, Upload] = field(default_factory=dict)


def _problem(message: str) -> InvalidRequest:
    return InvalidRequest(f"{message}; send the request as multipart/form-data, as the OpenAI SDK does",
                          code="invalid_form")


class _Reader:
    """python-multipart's callbacks, filling a Form part by part."""

    def __init__(self) -> None:
        self.form = Form()
        self.parts = 0
        self.ended = False
        self._begin()

    def _begin(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.header, self.value = b"", b""
        self.name, self.filename = "", None
        self.data: list[memoryview] = []
        self.size = 0

    def part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise _problem(f"the form has more than {MAX_PARTS} parts")
        self._begin()

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self.header += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self.value += data[start:end]

    def header_end(self) -> None:
        self.headers[self.header.lower()] = self.value
        self.header, self.value = b"", b""

    def headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        if b"name" not in options:
            raise _problem("a part of the form has no name (its Content-Disposition header names none)")
        self.name = _text(options[b"name"], "a part's name")
        if b"filename" in options:
            self.filename = _text(options[b"filename"], f"the file name of '{self.name}'")

    def part_data(self, data: bytes, start: int, end: int) -> None:
        self.size += end - start
        if self.filename is None and self.size > MAX_FIELD_BYTES:
            raise _problem(f"the field '{self.name}' is over {MAX_FIELD_BYTES} bytes")
        self.data.append(memoryview(data)[start:end])

    def part_end(self) -> None:
        data = b"".join(self.data)
        if self.filename is None:
            self.form.fields[self.name] = _text(data, f"the field '{self.name}'")
        else:
            content_type = self.headers.get(b"content-type", b"application/octet-stream")
            self.form.files[self.name] = Upload(self.filename, _text(content_type, f"the type of '{self.name}'"), data)

    def end(self) -> None:
        self.ended = True


def _text(data: bytes, what: str) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise _problem(f"{what} is not UTF-8 text") from None


async def read_form(request: Request) -> Form:
    """The request's multipart form, read whole; a 400 saying what is wrong with one that is not. A body of
    another type is an empty form, as Starlette's is: what the route then misses (its file) is the error."""
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data":
        return Form()
    if not options.get(b"boundary"):
        raise _problem("the multipart Content-Type has no boundary")
    reader = _Reader()
    parser = MultipartParser(options[b"boundary"], {
        "on_part_begin": reader.part_begin, "on_header_field": reader.header_field,
        "on_header_value": reader.header_value, "on_header_end": reader.header_end,
        "on_headers_finished": reader.headers_finished, "on_part_data": reader.part_data,
        "on_part_end": reader.part_end, "on_end": reader.end,
    })
    try:
        async for chunk in request.stream():
            parser.write(chunk)
    except MultipartParseError as exc:
        raise _problem(f"the form is not valid multipart ({exc})") from None
    if not reader.ended:
        raise _problem("the form ends before its closing boundary (was the upload cut off?)")
    return reader.form


def multipart(fields: dict[str, str], files: dict[str, Upload]) -> tuple[str, list[bytes]]:
    """A form as multipart/form-data: its Content-Type, and its body in parts, each file's bytes a part of
    their own (not copied). The names are the router's own (no quotes in them). httpx's encoder took 49 us
    for a 20 s clip's form, this one 7 (hot)."""
    boundary = secrets.token_hex(16).encode()
    parts = [b'--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'
             % (boundary, name.encode(), value.encode()) for name, value in fields.items()]
    for name, upload in files.items():
        parts.append(b'--%s\r\nContent-Disposition: form-data; name="%s"; filename="%s"\r\nContent-Type: %s\r\n\r\n'
                     % (boundary, name.encode(), upload.filename.encode(), upload.content_type.encode()))
        parts += [upload.data, b"\r\n"]
    parts.append(b"--%s--\r\n" % boundary)
    return f"multipart/form-data; boundary={boundary.decode()}", parts
