"""`nexa pull NAME --yes` without a terminal: the model type detected (or the pulled one kept), the named
or the default quant. The Ollama API's /api/pull and the web UI's POST /models both pull this way."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from nexa.errors import InvalidRequest
from nexa.store import ModelRef, Store

if TYPE_CHECKING:  # importing nexa.hub.pull imports huggingface_hub, slow: the server does it on first pull
    from nexa.hub.pull import PullEvents
    from nexa.hub.resolve import RepoFiles

    class AutoPullEvents(PullEvents, Protocol):
        """A pull's events, plus what the steps before the download say."""

        def status(self, text: str) -> None:
            """A step begins ("pulling manifest", ...)."""
            ...

        def listed(self, files: RepoFiles) -> None:
            """The repo's files are known (names, sizes, sha256), before any download starts."""
            ...


def pull_named(store: Store, ref: ModelRef, events: AutoPullEvents) -> bool:
    """Pull `ref` as `nexa pull --yes` does: resumable and verified. Runs in a thread (network and disk).
    Returns False when the name already resolves (a pulled model without a quant, or a pulled quant):
    then nothing is fetched and the network is not needed."""
    # On use, as the CLI does: huggingface_hub is slow to import.
    from nexa.hub import pull as hub_pull
    from nexa.hub.resolve import list_repo

    existing = store.get(ref.repo)
    if existing is not None and ref.quant in (None, *existing.quants):
        return False
    events.status("pulling manifest")
    files = list_repo(ref.repo)
    quant = ref.quant or files.default_quant()
    if quant not in files.quants:
        have = ", ".join(sorted(files.quants))
        raise InvalidRequest(f"{files.repo} has no quant {quant}; it has {have}", param="model")
    events.listed(files)
    model_type = existing.model_type if existing else hub_pull.guess_type(files)
    hub_pull.pull(store, files, quant, model_type, events)
    return True
