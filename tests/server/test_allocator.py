"""The router keeps the buffers a request frees for the next one (glibc): no page faults per upload."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Receives 50 uploads of a 2-minute clip's size as the router does (in 256 kB reads, then joined) and prints
# the page faults that took: after keep_freed_memory, or with glibc's default thresholds fixed (128 kB), which
# hand each freed buffer back. (glibc raises its defaults by itself after some frees, depending on what the
# process did before: a process that compiled its modules first faulted little, one that did not, a lot.)
PROGRAM = """
import ctypes, resource, sys
from nexa.server import serving
if sys.argv[1] == "keep":
    serving.keep_freed_memory()
else:
    mallopt = ctypes.CDLL("libc.so.6").mallopt
    mallopt(serving._M_MMAP_THRESHOLD, 128 * 1024)
    mallopt(serving._M_TRIM_THRESHOLD, 128 * 1024)
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
    assert faults("return") > 40_000  # each upload faulted in anew: ~1,900 pages
    assert faults("keep") < 5_000  # the first one only
