"""What a GGUF header says about a model, read without loading the weights."""

from __future__ import annotations

import functools
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf import GGUFReader, GGUFValueType, LlamaFileType

from nexa.errors import BadModelFile
from nexa.store.manifest import ModelType

# Bytes per cached K or V element for each KV cache type llama.cpp offers: f16 is its default; q8_0 and q4_0
# store blocks of 32 values with one f16 scale (34 and 18 bytes a block).
KV_ELEMENT_BYTES = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
# llama.cpp's pooling types: 1 mean, 2 cls, 3 last, 4 rank.
_POOLING_RANK = 4
_EMBEDDING_ARCHS = {"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "modern-bert", "neo-bert", "t5encoder"}


@dataclass(frozen=True)
class GGUFInfo:
    architecture: str
    name: str | None
    context_length: int | None
    block_count: int | None
    embedding_length: int | None
    pooling_type: int | None
    has_classifier: bool
    has_chat_template: bool
    parameters: int
    vision: bool
    audio: bool
    file_type: int | None

    @property
    def quant(self) -> str:
        """The quant the header declares ('MOSTLY_Q4_K_M' reads as 'Q4_K_M'), for files whose name has none."""
        try:
            name = LlamaFileType(self.file_type).name
        except ValueError:
            return "DEFAULT"
        return name.removeprefix("MOSTLY_").removeprefix("ALL_")

    @property
    def is_projector(self) -> bool:
        return self.architecture == "clip"

    def detect_type(self, has_mmproj: bool = False) -> ModelType:
        """Best guess at the model type; the user may override it."""
        return detect_type(self.architecture, self.pooling_type, self.has_classifier, has_mmproj)


def detect_type(architecture: str, pooling_type: int | None, has_classifier: bool, has_mmproj: bool) -> ModelType:
    """A rank pooling or a classifier head means reranker; a BERT-like arch or any pooling, embedder."""
    if pooling_type == _POOLING_RANK or has_classifier:
        return ModelType.reranker
    if architecture in _EMBEDDING_ARCHS or pooling_type:
        return ModelType.embedder
    return ModelType.vlm if has_mmproj else ModelType.llm


# GGUF value type -> struct format for scalars; 8 is a string, 9 an array.
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


def detect_type_from_prefix(data: bytes, has_mmproj: bool = False) -> ModelType | None:
    """The model type from the first bytes of a GGUF (a ranged download), or None when they are not a GGUF."""
    return HeaderScan().model_type(data, has_mmproj)


def read_prefix_kv(data: bytes) -> dict[str, Any]:
    """Header keys of a possibly truncated GGUF: scalars and strings as values, arrays as their length."""
    scan = HeaderScan()
    scan.feed(data, final=True)
    return scan.kv


class HeaderScan:
    """The header keys of a GGUF whose first bytes arrive piece by piece (a ranged download).

    GGUFReader needs the whole file. Here the header is walked key by key and the walk resumes where it
    stopped, so a download can stop as soon as the type is known. That can take more than a few MB: a
    250k-token vocabulary comes before the keys that mark a reranker in some files.
    """

    def __init__(self) -> None:
        self.kv: dict[str, Any] = {}
        self.complete = False  # every key was read (or the bytes are not a GGUF): more data changes nothing
        self._offset = 24
        self._remaining: int | None = None
        self._retry_at = 0  # a key cut off mid-way is re-read only once the data has doubled: linear overall

    def feed(self, data: bytes, final: bool = False) -> bool:
        """Read the keys that `data` (the file's first bytes, more each call) holds whole; True once the
        model type is known, so no more bytes are needed. `final` reads what it can now, however little."""
        if not self.complete and (final or len(data) >= self._retry_at):
            self._walk(data)
        return self.complete or self._is_reranker()

    def model_type(self, data: bytes, has_mmproj: bool = False) -> ModelType | None:
        """The type the keys read from `data` say, or None when they name no architecture."""
        self.feed(data, final=True)
        if "general.architecture" not in self.kv:
            return None
        arch = str(self.kv["general.architecture"])
        return detect_type(arch, self.kv.get(f"{arch}.pooling_type"), self._has_classifier(), has_mmproj)

    def _walk(self, data: bytes) -> None:
        if self._remaining is None:
            if len(data) < 24:
                return
            if data[:4] != b"GGUF":
                self.complete = True
                return
            self._remaining = struct.unpack_from("<Q", data, 16)[0]
        try:
            while self._remaining:
                key, offset = _read_string(data, self._offset)
                (value_type,), offset = struct.unpack_from("<I", data, offset), offset + 4
                self.kv[key], self._offset = _read_value(data, offset, value_type)
                self._remaining -= 1
        except struct.error:
            self._retry_at = 2 * len(data)  # the data ends inside this key: wait for more
            return
        except (UnicodeDecodeError, KeyError):
            pass  # not what it claims to be: keep what was read
        self.complete = True

    def _is_reranker(self) -> bool:
        """Rank pooling or a classifier head settles it early; any other type needs every key read."""
        arch = self.kv.get("general.architecture")
        if arch is None:
            return False
        pooling = self.kv.get(f"{arch}.pooling_type")
        return detect_type(str(arch), pooling, self._has_classifier(), False) is ModelType.reranker

    def _has_classifier(self) -> bool:
        return f"{self.kv.get('general.architecture')}.classifier.output_labels" in self.kv


def _read_string(data: bytes, offset: int) -> tuple[str, int]:
    (length,) = struct.unpack_from("<Q", data, offset)
    end = offset + 8 + length
    if end > len(data):
        raise struct.error("truncated")
    return data[offset + 8 : end].decode("utf-8"), end


def _read_value(data: bytes, offset: int, value_type: int) -> tuple[Any, int]:
    if value_type == _STRING:
        return _read_string(data, offset)
    if value_type == _ARRAY:
        item_type, count = struct.unpack_from("<IQ", data, offset)
        offset += 12
        for _ in range(count):
            _, offset = _read_value(data, offset, item_type)
        return count, offset
    fmt = "<" + _SCALARS[value_type]
    return struct.unpack_from(fmt, data, offset)[0], offset + struct.calcsize(fmt)


@functools.lru_cache(maxsize=256)
def _read_chat_template(path: str, mtime_ns: int) -> str | None:
    try:
        with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            template = read_prefix_kv(data).get("tokenizer.chat_template")  # type: ignore[arg-type]
    except (OSError, ValueError):
        return None
    return template if isinstance(template, str) else None


def file_version(path: str) -> int | None:
    """The file's modification time (ns), which keys every header cache; None when it cannot be read."""
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def read_chat_template(path: str) -> str | None:
    """The chat template in a GGUF header, or None; cached per file version. The header is walked key by
    key without GGUFReader's vocabulary arrays (tens of ms, not seconds), but still call it off the event loop."""
    version = file_version(path)
    return None if version is None else _read_chat_template(path, version)


@dataclass(frozen=True)
class Shape:
    """The header numbers that size the KV cache and the compute buffer."""

    n_layer: int
    n_head_kv: int
    key_length: int
    value_length: int
    n_vocab: int
    causal: bool  # encoder-only models (BERT) keep no KV cache
    n_ctx_train: int | None = None  # the context it was trained for (`<arch>.context_length`)

    def kv_bytes_per_token(self, kv_type: str = "f16") -> int:
        if not self.causal:
            return 0
        elements = self.n_layer * self.n_head_kv * (self.key_length + self.value_length)
        return int(elements * KV_ELEMENT_BYTES[kv_type])


def _value(reader: GGUFReader, key: str) -> Any:
    """A scalar, or the largest element of a per-layer array (some models vary heads by layer)."""
    field = reader.get_field(key)
    if field is None or not field.types:
        return None
    if field.types[0] == GGUFValueType.ARRAY:
        values = [int(field.parts[i][0]) for i in field.data] if field.data else []
        return max(values, default=None)
    return field.contents()


@functools.lru_cache(maxsize=64)
def _read_shape(path: str, mtime_ns: int) -> Shape | None:
    try:
        reader = open_reader(Path(path))
    except (OSError, ValueError):
        return None  # unreadable or truncated: the load itself will say why
    arch = str(_value(reader, "general.architecture") or "")
    n_layer = _value(reader, f"{arch}.block_count") or 0
    n_head = _value(reader, f"{arch}.attention.head_count") or 1
    n_embd = _value(reader, f"{arch}.embedding_length") or 0
    head_dim = n_embd // max(1, n_head)
    tokens = reader.get_field("tokenizer.ggml.tokens")
    causal = _value(reader, f"{arch}.attention.causal")
    return Shape(
        n_layer=int(n_layer),
        n_head_kv=int(_value(reader, f"{arch}.attention.head_count_kv") or n_head),
        key_length=int(_value(reader, f"{arch}.attention.key_length") or head_dim),
        value_length=int(_value(reader, f"{arch}.attention.value_length") or head_dim),
        n_vocab=len(tokens.data) if tokens is not None else 0,
        causal=True if causal is None else bool(causal),
        n_ctx_train=_value(reader, f"{arch}.context_length"),
    )


def read_shape(path: str) -> Shape | None:
    """The model's shape from its header, cached per file version; None when the header is unreadable."""
    version = file_version(path)
    return None if version is None else _read_shape(path, version)


def open_reader(path: Path) -> GGUFReader:
    """GGUFReader for `path`; a file it cannot parse is a BadModelFile that says what to do, not numpy's
    reshape error (a truncated file fails deep inside the reader with ValueError or IndexError)."""
    try:
        return GGUFReader(path, "r")
    except (ValueError, IndexError) as exc:
        with path.open("rb") as handle:
            magic = handle.read(4)
        if magic != b"GGUF":
            raise BadModelFile(f"{path} is not a GGUF file (it does not start with 'GGUF'); "
                               "nexa serves GGUF models: convert it, or pick the .gguf file") from exc
        raise BadModelFile(f"{path} is not a complete GGUF file ({path.stat().st_size:,} bytes, it ends before "
                           "its header or tensor table does): download or copy it again") from exc


def read_info(path: Path) -> GGUFInfo:
    """Parse the header of a GGUF file; raises BadModelFile (a ValueError) when it is not a readable one."""
    reader = open_reader(path)
    arch = str(_value(reader, "general.architecture") or "unknown")
    return GGUFInfo(
        architecture=arch,
        name=_value(reader, "general.name"),
        context_length=_value(reader, f"{arch}.context_length"),
        block_count=_value(reader, f"{arch}.block_count"),
        embedding_length=_value(reader, f"{arch}.embedding_length"),
        pooling_type=_value(reader, f"{arch}.pooling_type"),
        has_classifier=reader.get_field(f"{arch}.classifier.output_labels") is not None
        or any(t.name == "cls.output.weight" for t in reader.tensors),
        has_chat_template=reader.get_field("tokenizer.chat_template") is not None,
        parameters=sum(int(t.n_elements) for t in reader.tensors),
        vision=bool(_value(reader, "clip.has_vision_encoder")),
        audio=bool(_value(reader, "clip.has_audio_encoder")),
        file_type=_value(reader, "general.file_type"),
    )
