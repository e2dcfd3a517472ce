"""``python -m bench`` (``make bench``): cachecluster against its peers, one command.

By default it runs the peer suite (:mod:`bench.peers.suite`; ``python -m bench
--help`` for its flags) and writes ``bench/results/<stamp>.json``, ``.md`` and
PNG plots. ``--peer-cache disk`` (the default) keeps the peers' caches on the
root disk, where their defaults put them; ``--peer-cache tmpfs`` puts them in
RAM like cachecluster's MEM tier; the result's title names which.
``python -m bench --suite internal [NAME ...]`` runs the benchmarks of our own
parts instead (see ``BENCHMARKS``), each in its own process; each
measures its own baseline in the same run and prints medians with min/max.
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


def internal(names: list[str]) -> int:
    """Run the named internal benchmarks (all by default); return the worst exit code."""
    names = names or list(BENCHMARKS)
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


def main(argv: list[str]) -> int:
    """``--suite internal [NAME ...]`` or ``[--suite peers] [suite flags]``."""
    if argv[:1] == ["--suite"] or (argv and argv[0].startswith("--suite=")):
        suite = argv[1] if argv[0] == "--suite" and len(argv) > 1 else argv[0].partition("=")[2]
        rest = argv[2:] if argv[0] == "--suite" else argv[1:]
        if suite == "internal":
            return internal(rest)
        if suite != "peers":
            print(f"--suite {suite!r}: unknown; known: peers, internal", file=sys.stderr)
            return 64
        argv = rest
    from bench.peers.suite import main as peers

    return peers(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
