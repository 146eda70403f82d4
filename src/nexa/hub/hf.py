"""The boundary with Hugging Face: settings read at call time, and its refusals as HubError.

Settings are read when used, not at import (huggingface_hub's constants are frozen at import),
so a test or a shell that sets HF_ENDPOINT just before a pull is honoured.
"""

from __future__ import annotations

import os

from huggingface_hub import HfApi, hf_hub_url
from huggingface_hub.utils import build_hf_headers

from nexa import __version__
from nexa.errors import HubError

DEFAULT_ENDPOINT = "https://huggingface.co"
LOGIN_HINT = "log in with: HF_TOKEN=hf_... nexa pull {repo}   (or: hf auth login)"


def endpoint() -> str:
    """HF_ENDPOINT (a mirror) or huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def token() -> str | None:
    """NEXA_HFTOKEN, then HF_TOKEN; None lets huggingface_hub use the token saved by `hf auth login`."""
    return os.environ.get("NEXA_HFTOKEN") or os.environ.get("HF_TOKEN") or None


def api() -> HfApi:
    return HfApi(endpoint=endpoint(), token=token(), library_name="nexa", library_version=__version__)


def auth_headers() -> dict[str, str]:
    """The headers huggingface_hub itself sends: user agent and, when there is one, the token."""
    return build_hf_headers(token=token(), library_name="nexa", library_version=__version__)


def file_url(repo: str, revision: str, filename: str) -> str:
    return hf_hub_url(repo, filename, revision=revision, endpoint=endpoint())


def access_error(repo: str, status: int) -> HubError:
    """What a refusal from the Hub means for the user, and what to do about it."""
    if status in (401, 403) and token() is None:
        return HubError(
            f"{repo} is gated or private (or does not exist) and you are not logged in; {LOGIN_HINT.format(repo=repo)}",
            code="hub_access_denied",
        )
    if status in (401, 403):
        return HubError(
            f"{repo} is gated or private and your token cannot read it; accept its terms at {endpoint()}/{repo} "
            "or use a token with access (HF_TOKEN or NEXA_HFTOKEN)",
            code="hub_access_denied",
        )
    if status == 404:
        return HubError(f"{repo} does not exist on {endpoint()}; check the name (org/repo)", code="hub_not_found")
    return HubError(f"{endpoint()} answered HTTP {status} for {repo}; try again later", code="hub_error")
