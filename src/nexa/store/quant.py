"""Read what a GGUF file name says: its quant, whether it is a split shard or a projector."""

from __future__ import annotations

import re

_QUANT = re.compile(
    r"(?<![A-Za-z0-9])("
    r"IQ[1-4]_(?:XXS|XS|NL|S|M|L)"
    r"|IQ[1-4]_K(?:_[SML])?"
    r"|TQ[12]_0|MXFP4"
    r"|Q[1-8]_K(?:_XL|_[SML])?"
    r"|Q[1-8]_[01]"
    r"|BF16|FP16|FP32|F16|F32"
    r")(?![A-Za-z0-9])",
    re.IGNORECASE,
)
_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


def parse_quant(filename: str) -> str | None:
    """The quant named in a file name, upper case ('FP16' reads as 'F16'); the last match wins."""
    matches = _QUANT.findall(filename)
    if not matches:
        return None
    quant = matches[-1].upper()
    return {"FP16": "F16", "FP32": "F32"}.get(quant, quant)


def shard_info(filename: str) -> tuple[int, int] | None:
    """(index, count) of a split shard such as `x-00002-of-00003.gguf`, else None."""
    match = _SHARD.search(filename)
    return (int(match.group(1)), int(match.group(2))) if match else None


def shard_group(filename: str) -> str:
    """The name shared by every shard of a split model (the name itself when not split)."""
    return _SHARD.sub(".gguf", filename)


def is_mmproj_name(filename: str) -> bool:
    return "mmproj" in filename.lower()
