"""What a Hugging Face repo offers: its GGUF files grouped by quant, split shards together, projectors apart."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import PurePosixPath

from huggingface_hub.errors import HFValidationError, HfHubHTTPError, OfflineModeIsEnabled

from nexa.errors import HubError, InvalidRequest
from nexa.hub import hf
from nexa.store.manifest import preferred_quant
from nexa.store.quant import is_mmproj_name, parse_quant, shard_group, shard_info

_NETWORK_MODULES = {"httpx", "httpx2", "requests", "urllib3"}


@dataclass(frozen=True)
class RemoteFile:
    """A file in the repo; `sha256` is the LFS hash the Hub lists (None for small files kept in git)."""

    name: str
    size: int
    sha256: str | None


@dataclass(frozen=True)
class RepoFiles:
    """A repo at one commit: downloads use `revision`, so every file comes from the same commit."""

    repo: str
    revision: str
    quants: dict[str, list[RemoteFile]]
    mmprojs: list[RemoteFile]

    def size(self, quant: str) -> int:
        return sum(f.size for f in self.quants[quant])

    def default_quant(self) -> str:
        return preferred_quant({q: self.size(q) for q in self.quants})

    def mmproj(self) -> RemoteFile | None:
        """The projector to pull with a vlm: F16 where there is one (the usual recommendation), else the smallest."""
        if not self.mmprojs:
            return None
        f16 = [f for f in self.mmprojs if parse_quant(f.name) == "F16"]
        return min(f16 or self.mmprojs, key=lambda f: (f.size, f.name))


def list_repo(repo: str) -> RepoFiles:
    """List `repo`'s GGUF files with sizes and sha256; a missing, gated or GGUF-less repo is a HubError."""
    try:
        info = hf.api().model_info(repo, files_metadata=True)
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        raise hf.access_error(repo, status) from exc
    except OfflineModeIsEnabled as exc:
        raise HubError("HF_HUB_OFFLINE is set, so nothing can be pulled; unset it and run nexa pull again") from exc
    except HFValidationError:
        raise InvalidRequest(
            f"'{repo}' is not a Hugging Face repo id: that is org/repo, each part at most 96 letters, digits, '-', "
            "'_' or '.', neither starting nor ending with '-' or '.', and without '--' or '..'", param="model",
        ) from None
    except Exception as exc:
        if type(exc).__module__.split(".")[0] not in _NETWORK_MODULES:
            raise
        raise HubError(f"cannot reach {hf.endpoint()} ({exc}); check your network, or HF_ENDPOINT for a mirror") from exc
    files = [
        RemoteFile(s.rfilename, s.lfs.size if s.lfs else (s.size or 0), s.lfs.sha256 if s.lfs else None)
        for s in info.siblings or []
    ]
    quants, mmprojs = group_files(files)
    if not quants:
        raise HubError(f"{info.id} has no GGUF model files; nexa serves GGUF models (look for a '-GGUF' repo)")
    return RepoFiles(repo=info.id, revision=info.sha or "main", quants=quants, mmprojs=mmprojs)


def group_files(files: list[RemoteFile]) -> tuple[dict[str, list[RemoteFile]], list[RemoteFile]]:
    """(quant → files, shards in order; projectors). Other files, and splits missing a shard, are left out."""
    ggufs = [f for f in files if f.name.lower().endswith(".gguf") and _safe(f.name)]
    mmprojs = sorted((f for f in ggufs if is_mmproj_name(f.name)), key=lambda f: f.name)
    groups: dict[str, list[RemoteFile]] = defaultdict(list)
    for f in sorted(ggufs, key=lambda f: f.name):
        if not is_mmproj_name(f.name):
            groups[shard_group(f.name)].append(f)
    quants: dict[str, list[RemoteFile]] = {}
    for group, members in groups.items():
        members.sort(key=lambda f: (shard_info(f.name) or (1, 1))[0])
        split = shard_info(members[0].name)
        if split and len(members) != split[1]:
            continue
        quant = parse_quant(group) or PurePosixPath(group).stem.upper()
        quants.setdefault(quant, members)  # two different files of one quant: the first by name
    return quants, mmprojs


def _safe(name: str) -> bool:
    """A repo path that stays inside the model folder (a hostile mirror could list '../x.gguf')."""
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts
