"""The router keeps the buffers a request frees for the next one (glibc): no page faults per upload."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Receives 50 uploads of a 2-minute clip's size as the router does (in 256 kB reads, then joined) and prints
# the page faults that took, with or without keep_freed_memory first.
PROGRAM = """
import resource, sys
from nexa.server.serving import keep_freed_memory
if sys.argv[1] == "keep":
    keep_freed_memory()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    reads = [b"x" * 256_000 for _ in range(15)]
    upload = b"".join(reads)
    del reads, upload
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    return int(subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, check=True).stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_buffers_are_kept_for_the_next_request():
    assert faults("default") > 40_000  # each upload faulted in anew: ~1,900 pages
    assert faults("keep") < 5_000  # the first one only
