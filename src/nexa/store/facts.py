"""A stored model's facts, from its manifest and its GGUF headers: its `org/repo:QUANT` id, what it can do
(capabilities, tool support, the media its projector reads) and what /api/show, /api/tags and `nexa show`
report. Every route, dialect and command asks here, and each header fact is read once per file version
and cached here once. Reading a header touches the disk: call these off the event loop."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nexa.errors import ModelLoadFailed
from nexa.store.gguf_meta import file_version, read_chat_template, read_info
from nexa.store.manifest import Manifest, ModelType

# Jinja tags, and the quoted strings inside them: a template supports tools when its code reads `tools`.
_TAG_OPEN = re.compile(r"\{[{%]")
_TAG_CLOSE = {"{{": "}}", "{%": "%}"}
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_TOOLS_VARIABLE = re.compile(r"\btools\b")


def model_id(manifest: Manifest, quant: str) -> str:
    """The id a loaded quant goes by everywhere (model cards, /api/ps, /props' model_alias): org/repo:QUANT."""
    return f"{manifest.name}:{quant}"


# ---------------------------------------------------------------- header facts


@dataclass(frozen=True)
class Facts:
    """What a quant's header says that /api/tags, /api/show and /api/ps report."""

    architecture: str
    basename: str
    context_length: int | None
    parameters: int
    template: str


@functools.lru_cache(maxsize=256)
def _facts(path: str, mtime_ns: int) -> Facts:
    try:
        info = read_info(Path(path))
    except (OSError, ValueError):
        return Facts("unknown", Path(path).stem, None, 0, "")
    return Facts(info.architecture, info.name or Path(path).stem, info.context_length, info.parameters,
                 read_chat_template(path) or "")


def facts(manifest: Manifest, model_dir: Path, quant: str) -> Facts:
    """The quant's header facts, cached per file version. Parses the whole header (tensor table included)."""
    path = str(manifest.quants[quant].files[0].location(model_dir))
    return _facts(path, file_version(path) or 0)


# ---------------------------------------------------------------- media


@dataclass(frozen=True)
class MediaSupport:
    """Which media a model reads: decided by its projector (mmproj), if it has one."""

    model: str
    image: bool
    audio: bool


# (vision, audio) of each projector file read, by path and sha256 (which keys a re-pull): a few entries per
# pulled model at most.
_PROJECTOR_READS: dict[tuple[str, str], tuple[bool, bool]] = {}


def media_support(manifest: Manifest, model_dir: Path) -> MediaSupport:
    """What the model's projector reads; an unreadable projector is the model's failure to load (503)."""
    if (known := known_media_support(manifest, model_dir)) is not None:
        return known
    assert manifest.mmproj is not None
    path = str(manifest.mmproj.location(model_dir))
    try:
        info = read_info(Path(path))
    except (OSError, ValueError) as exc:
        raise ModelLoadFailed(
            f"the projector of '{manifest.name}' cannot be read ({exc}); pull the model again",
            code="model_load_failed",
        ) from exc
    _PROJECTOR_READS[path, manifest.mmproj.sha256] = info.vision, info.audio
    return MediaSupport(manifest.name, image=info.vision, audio=info.audio)


def known_media_support(manifest: Manifest, model_dir: Path) -> MediaSupport | None:
    """`media_support` where no file needs reading (no projector, or its header read before), else None: a
    request on the event loop skips a thread hop (half a millisecond) for what it almost always knows."""
    if manifest.mmproj is None:
        return MediaSupport(manifest.name, image=False, audio=False)
    reads = _PROJECTOR_READS.get((str(manifest.mmproj.location(model_dir)), manifest.mmproj.sha256))
    return None if reads is None else MediaSupport(manifest.name, image=reads[0], audio=reads[1])


# ---------------------------------------------------------------- tools and capabilities


def template_reads_tools(template: str) -> bool:
    """Whether a chat template's code uses the `tools` variable. llama.cpp renders tools only through
    the template; one that never reads them (SmolLM2's) gets tools dropped and no tool instructions."""
    return any(_TOOLS_VARIABLE.search(_QUOTED.sub("", tag)) for tag in _jinja_tags(template))


def _jinja_tags(template: str) -> Iterator[str]:
    """The template's {{ }} and {% %} tags, in one pass: a lazy regex (`{{.*?}}`) scans to the end again for each
    opener that is never closed, which a model file can repeat a million times."""
    unclosed: set[str] = set()  # closers not found after some opener: not found after any later one either
    at = 0
    while (found := _TAG_OPEN.search(template, at)) is not None:
        close = _TAG_CLOSE[found.group()]
        end = -1 if close in unclosed else template.find(close, found.end())
        if end < 0:
            unclosed.add(close)
            at = found.start() + 1
            continue
        yield template[found.start():end + 2]
        at = end + 2


def _chat_template(manifest: Manifest, model_dir: Path, quant: str | None) -> str | None:
    """The quant's (default: the default quant's) chat template; None for a retrieval model or none."""
    entry = manifest.quants.get(quant or manifest.default_quant())
    if entry is None or manifest.model_type not in (ModelType.llm, ModelType.vlm):
        return None
    return read_chat_template(str(entry.files[0].location(model_dir)))


def supports_tools(manifest: Manifest, model_dir: Path, quant: str | None = None) -> bool:
    """Whether the model can be asked for tool calls: a chat model whose GGUF chat template reads
    `tools`. The chat routes, /v1/models and nexa show all decide with it."""
    template = _chat_template(manifest, model_dir, quant)
    return template is not None and template_reads_tools(template)


def capabilities(manifest: Manifest, model_dir: Path, quant: str | None = None) -> list[str]:
    """What requests the model serves, as a model card lists them (Ollama's names where they exist):
    from its type, its chat template and its projector's header."""
    if manifest.model_type is ModelType.embedder:
        return ["embeddings"]
    if manifest.model_type is ModelType.reranker:
        return ["reranking"]
    template = _chat_template(manifest, model_dir, quant)
    found = ["completion"]
    if template:
        found += ["chat"] + (["tools"] if template_reads_tools(template) else [])
    if manifest.mmproj is not None:
        try:
            media = media_support(manifest, model_dir)
        except ModelLoadFailed:
            return found  # an unreadable projector: the load will say why
        found += (["vision"] if media.image else []) + (["audio", "transcription"] if media.audio else [])
    return found
