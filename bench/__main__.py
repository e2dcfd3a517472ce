"""``python -m bench`` (``make bench``): every benchmark, one after another.

Each benchmark measures its own baseline in the same run and prints medians
with min/max and the ratios. ``python -m bench NAME ...`` runs only those
(see ``BENCHMARKS``).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

BENCHMARKS = (
    "block_store",
    "ufs_read",
    "data_path",
    "ring",
    "cluster_read",
    "dataload",
    "fuse",
)


def main(argv: list[str]) -> int:
    """Run the named benchmarks (all by default); return the worst exit code."""
    names = argv or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 64
    worst = 0
    for name in names:
        module = f"bench.bench_{name}"
        if importlib.util.find_spec(module) is None:
            print(f"== {name}: missing ({module} is not there)", flush=True)
            worst = max(worst, 1)
            continue
        print(f"== {name}", flush=True)
        worst = max(worst, subprocess.call([sys.executable, "-m", module]))
    return worst


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
