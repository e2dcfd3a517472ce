"""The outputs of a suite run: JSON, a Markdown table and PNG plots.

Figures are medians over the rounds with min and max; ratios are speed-ups
against the direct-S3 baseline of the same run (> 1 means faster, for
times as for rates). Cells with no figure say why: missing system, skipped
workload (with its reason) or the error it raised.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

PEERS = ("fsspec-blockcache", "fsspec-simplecache", "rclone", "s3fs-fuse")
OURS = ("cachecluster-client", "cachecluster-fuse")
REFERENCE = "tmpfs-copy"
"""The warm rows' reference: a tmpfs file read in the bench's own process, no cache system."""
MOUNT_REFERENCE = "pyfuse3-minimal"
"""The mount's second warm reference: the tmpfs files through the least pyfuse3 server."""
COLD_REFERENCE = "get-store"
"""The cold rows' reference: the baseline's GET, its bytes also written to tmpfs."""
WARM = ("seq_warm", "random_1m", "small_warm", "concurrent_4", "model_load")
COLD = ("seq_cold", "small_cold", "model_cold")
"""Cold reads: issue 6 wants them no slower than one direct GET (the baseline)."""
MIN_RUNS = 3
"""Issue 6: each figure a median of at least this many runs."""
PERCENTILES = (50, 90, 99)
COLD_OF = {"seq_warm": "seq_cold", "small_warm": "small_cold", "model_load": "model_cold"}
"""The baseline has no cache: a warm row's ratio falls back to its cold figure."""


def peer_cache(document: dict[str, Any]) -> str:
    """``disk`` or ``tmpfs``: where the run kept the peers' caches (runs before the
    ``--peer-cache`` flag kept them on tmpfs)."""
    return str(document.get("peer_cache", "tmpfs"))


def comparison(document: dict[str, Any]) -> str:
    """One sentence: which comparison the run is."""
    if peer_cache(document) == "disk":
        return (
            "Peers' caches on disk, where their users get them by default "
            "(`--peer-cache disk`), against cachecluster's MEM tier (tmpfs, as in the seeds' "
            "JindoRuntime). The page cache is dropped before every figure, so a peer's warm "
            "read comes from its disk; `--peer-cache tmpfs` compares with every cache in RAM."
        )
    return (
        "Every cache in RAM (`--peer-cache tmpfs`): the peers' caches on tmpfs like "
        "cachecluster's MEM tier, so a peer's warm read is a tmpfs read (the page cache "
        "dropped before each figure does not touch tmpfs); `--peer-cache disk` puts the "
        "peers' caches where their defaults do."
    )


def cache_line(record: dict[str, Any]) -> str:
    """``cache on: ...`` of one system for the Systems section ('' when not recorded)."""
    cache = record.get("cache")
    if not cache:
        return ""
    parts = []
    if cache.get("medium"):
        medium = cache["medium"]
        parts.append(f"cache on: {medium['describe']}, under `{medium['path']}`")
    elif "error" not in cache:
        parts.append("no cache")
    if cache.get("default"):
        here = cache.get("default_medium")
        parts.append(cache["default"] + (f" ({here['describe']} here)" if here else ""))
    if cache.get("error"):
        parts.append(f"cache medium unknown: {cache['error']}")
    return "; " + "; ".join(parts) if parts else ""


def percentile(values: list[float], pct: int) -> float:
    """The ``pct``-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summarize(document: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per system and workload: median, min, max, n, latency percentiles, ratio, or why none."""
    better = {w["id"]: w["better"] for w in document["workloads"]}
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, record in document["systems"].items():
        out[name] = {}
        for workload, cell in record["workloads"].items():
            values = cell["values"]
            entry: dict[str, Any] = {"n": len(values)}
            if values:
                entry.update(median=statistics.median(values), min=min(values), max=max(values))
                if cell.get("items"):
                    entry["items_min"] = min(cell["items"])
                for pct in PERCENTILES if cell["latencies_ms"] else ():
                    entry[f"p{pct}_ms"] = percentile(cell["latencies_ms"], pct)
                for side in ("cpu_s3", "cpu_rest"):  # runs from before the CPU count have none
                    if cell.get(side):
                        entry[side] = statistics.median(cell[side])
            if record["status"] == "missing":
                entry["why"] = f"missing: {record['reason']}"
            elif cell["skipped"]:
                entry["why"] = f"not run: {cell['skipped']}"
            elif cell["error"]:
                entry["why"] = f"error: {cell['error']}"
            elif not values:
                entry["why"] = f"error: {record['reason'] or 'no figure'}"
            out[name][workload] = entry
    baseline = out.get(document["baseline"], {})
    for _name, cells in out.items():
        for workload, entry in cells.items():
            base = baseline.get(workload, {}).get("median") or baseline.get(
                COLD_OF.get(workload, ""), {}
            ).get("median")
            if base and "median" in entry and entry["median"] > 0:
                ratio = entry["median"] / base
                entry["ratio"] = ratio if better[workload] == "higher" else 1 / ratio
    return out


def _figure(entry: dict[str, Any]) -> str:
    if "median" not in entry:
        return "—"
    digits = 2 if entry["median"] < 100 else 0
    return f"{entry['median']:.{digits}f} ({entry['min']:.{digits}f}-{entry['max']:.{digits}f})"


def _few_runs(runs: int) -> str:
    if runs >= MIN_RUNS:
        return ""
    return f", fewer than the {MIN_RUNS} issue 6 asks: not medians to quote"


def _targets(document: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    peers = [p for p in PEERS if p in summary]
    base = document["baseline"]
    for ours in (o for o in OURS if o in summary):
        for workload in WARM:
            mine = summary[ours].get(workload, {}).get("ratio")
            rivals = {p: summary[p].get(workload, {}).get("ratio") for p in peers}
            known = {p: r for p, r in rivals.items() if r}
            if mine is None or not known:
                lines.append(f"- {ours}, {workload}: not measurable in this run")
                continue
            best = max(known, key=lambda p: known[p])
            lead = mine / known[best]
            goal = 1.0 if workload == "small_warm" else 1.5
            verdict = "met" if lead >= goal else "NOT met"
            unmeasured = [p for p in PEERS if p not in known]
            lines.append(
                f"- {ours}, {workload} (warm): {lead:.2f}x the best peer ({best}); "
                f"target >= {goal}x: {verdict}"
                + (f" (no figure from {', '.join(unmeasured)})" if unmeasured else "")
                + _against_reference(summary, REFERENCE, workload, mine, known[best])
                + (
                    _against_reference(summary, MOUNT_REFERENCE, workload, mine, known[best])
                    if ours == "cachecluster-fuse"
                    else ""
                )
            )
        for workload in COLD:
            mine = summary[ours].get(workload, {}).get("ratio")
            if mine is None:
                lines.append(f"- {ours}, {workload}: not measurable in this run")
                continue
            verdict = "met" if mine >= 1.0 else "NOT met"
            lines.append(
                f"- {ours}, {workload}: {mine:.2f}x {base}; target >= 1.0x: {verdict}"
                + _against_reference(summary, COLD_REFERENCE, workload, mine, 1.0, base)
            )
    return lines


REFERENCE_IS = {
    REFERENCE: "a plain tmpfs read",
    MOUNT_REFERENCE: "the least pyfuse3 mount",
    COLD_REFERENCE: "a GET that keeps a tmpfs copy",
}


def _against_reference(
    summary: dict[str, Any],
    reference: str,
    workload: str,
    mine: float,
    best: float,
    best_is: str = "the best peer",
) -> str:
    """Where ``reference`` lies against ``best`` (a ratio to the baseline), if measured."""
    theirs = summary.get(reference, {}).get(workload, {}).get("ratio")
    if not theirs:
        return ""
    return (
        f"; {REFERENCE_IS[reference]} ({reference}) is {theirs / best:.2f}x {best_is}, "
        f"cachecluster {mine / theirs:.2f}x of it"
    )


def markdown(document: dict[str, Any], summary: dict[str, Any], stem: str) -> str:
    """The Markdown page of one run."""
    machine = document["machine"]
    layout = document["layout"]
    systems = list(summary)
    workloads = document["workloads"]
    head = "| workload | " + " | ".join(systems) + " |"
    rule = "| --- |" + " --- |" * len(systems)
    notes: list[str] = []

    def why(entry: dict[str, Any]) -> str:
        if "why" not in entry:
            return "—"
        if entry["why"] not in notes:
            notes.append(entry["why"])
        return f"n/a [{notes.index(entry['why']) + 1}]"

    lines = [
        f"# Peer benchmark {document['stamp']}: peer caches on {peer_cache(document)}",
        "",
        f"Command: `{document['command']}` (rounds a system: {document['runs']}"
        f"{_few_runs(document['runs'])}; "
        f"{document['seconds'] / 60:.1f} min in all). Machine: {machine['cores']} cores "
        f"({machine['cpu']}), {machine['memory_gib']} GiB RAM, {machine['os']}, kernel "
        f"{machine['kernel']}, Python {machine['python']}. Load average before / after: "
        f"{document['load_before'][0]:.2f} / {document['load_after'][0]:.2f}.",
        "",
        f"UFS: {document['ufs']}. Objects: one {layout['big_file_bytes'] >> 20} MiB file, "
        f"{layout['small_files']} files of 64 KiB (1,000 a folder), a model of "
        f"{layout['model_bytes'] >> 20} MiB in {layout['model_shards']} shards; seeded random "
        f"bytes, the same objects for every system. Page cache dropped before every figure: "
        f"{'yes' if document['page_cache_dropped'] else 'NO (not root): cold figures may be warm'}"
        ".",
        "",
        comparison(document),
        "",
        f"## Speed-up against {document['baseline']} (median / baseline median; > 1 is faster)",
        "",
        "The baseline has no cache, so warm rows are divided by its cold figure.",
        "",
        head,
        rule,
    ]

    def rows(cell: Callable[[dict[str, Any]], str], unit: bool = False) -> list[str]:
        """One table row a workload, ``cell(entry)`` for each system."""
        return [
            "| "
            + (f"{w['title']} ({w['unit']})" if unit else w["title"])
            + " | "
            + " | ".join(cell(summary[name][w["id"]]) for name in systems)
            + " |"
            for w in workloads
        ]

    lines += rows(lambda e: f"{e['ratio']:.2f}x" if "ratio" in e else why(e))
    lines += ["", "## Figures: median (min-max)", "", head, rule]
    lines += rows(lambda e: _figure(e) if "median" in e else why(e), unit=True)
    if any("p50_ms" in summary[n].get("random_1m", {}) for n in systems):
        lines += ["", "1 MiB random reads, latency p50 / p90 / p99 (ms): " + "; ".join(
            f"{n} {e['p50_ms']:.1f} / {e['p90_ms']:.1f} / {e['p99_ms']:.1f}"
            for n in systems
            if "p50_ms" in (e := summary[n].get("random_1m", {}))
        ) + "."]  # fmt: skip
    if any("cpu_s3" in summary[n].get(w["id"], {}) for n in systems for w in workloads):
        lines += [
            "",
            "## CPU seconds a figure cost (median): S3 server + the rest",
            "",
            "Read from /proc around each figure: the S3 server's processes, then the suite's "
            "own process (the reader; boto3, fsspec and tmpfs-copy run in it) and every other "
            "process it started (cachecluster's master, workers and mount, rclone, s3fs-fuse). "
            f"On {machine['cores']} cores, a figure that takes t seconds has at most "
            f"{machine['cores']}t to spend.",
            "",
            head,
            rule,
        ]
        lines += rows(
            lambda e: f"{e['cpu_s3']:.2f} + {e['cpu_rest']:.2f}" if "cpu_s3" in e else "—"
        )
    capped = [
        f"{name} {w['id']} {summary[name][w['id']]['items_min']}"
        for w in workloads
        for name in systems
        if summary[name][w["id"]].get("items_min", layout["small_files"]) < layout["small_files"]
    ]
    if capped:
        lines += [
            "",
            f"Passes over the small files stop after {document['pass_seconds']:g} s; these "
            f"did fewer than all {layout['small_files']} files (fewest in a round): "
            + "; ".join(capped)
            + ".",
        ]
    lines += ["", "## How each figure was taken", ""]
    lines += [f"- {w['title']}: {w['cache']}." for w in workloads]
    lines += [
        "",
        "The page cache is dropped before every figure: a warm read of a cache on disk comes "
        "from the disk, one on tmpfs from RAM (tmpfs is not dropped). Where each cache is: "
        "Systems, below.",
    ]
    lines += ["", f"## Systems (peer caches on {peer_cache(document)})", ""]
    for name, record in document["systems"].items():
        state = "" if record["status"] == "ok" else f" — {record['status']}: {record['reason']}"
        lines.append(
            f"- `{name}`: {record['label']}; cold = {record['cold_how']}{cache_line(record)}{state}"
        )
    if document.get("not_selected"):
        left_out = ", ".join(document["not_selected"])
        lines.append(f"- not in this run (left out by --systems): {left_out}")
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"{i}. {note}" for i, note in enumerate(notes, 1)]
    targets = _targets(document, summary)
    if targets:
        lines += ["", "## Issue 6 targets for cachecluster", "", comparison(document), "", *targets]
    lines += ["", f"![throughput]({stem}-figures.png)", "", f"![latency]({stem}-latency.png)", ""]
    return "\n".join(lines)


def plots(document: dict[str, Any], summary: dict[str, Any], out: Path, stem: str) -> list[Path]:
    """A bar chart per workload (median, min-max whiskers) and the random-read percentiles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = list(summary)
    workloads = document["workloads"]
    columns = 5
    rows = -(-len(workloads) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 4.2 * rows), squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, w in zip(axes.flat, workloads, strict=False):
        for i, name in enumerate(systems):
            entry = summary[name][w["id"]]
            if "median" in entry:
                low, high = entry["median"] - entry["min"], entry["max"] - entry["median"]
                ax.bar(i, entry["median"], color=colors(i), yerr=[[low], [high]], capsize=3)
            else:
                ax.text(i, 0, "n/a", ha="center", va="bottom", fontsize=8, rotation=90)
        arrow = "higher is better" if w["better"] == "higher" else "lower is better"
        ax.set_title(f"{w['title']}\n{w['unit']}, {arrow}", fontsize=9)
        ax.set_xticks(range(len(systems)), systems, rotation=60, ha="right", fontsize=7)
    for ax in list(axes.flat)[len(workloads) :]:
        ax.axis("off")
    fig.suptitle(
        f"cachecluster vs peers, {document['stamp']}, peer caches on {peer_cache(document)} "
        "(median, min-max)"
    )
    fig.tight_layout()
    figures = out / f"{stem}-figures.png"
    fig.savefig(figures, dpi=80)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(PERCENTILES)
    for j, pct in enumerate(PERCENTILES):
        xs, ys = [], []
        for i, name in enumerate(systems):
            entry = summary[name].get("random_1m", {})
            if f"p{pct}_ms" in entry:
                xs.append(i + (j - 1) * width)
                ys.append(entry[f"p{pct}_ms"])
        ax.bar(xs, ys, width, label=f"p{pct}")
    ax.set_yscale("log")
    ax.set_ylabel("ms per 1 MiB read (log)")
    ax.set_title(
        f"1 MiB random reads, warm cache (peer caches on {peer_cache(document)}): "
        "latency percentiles (lower is better)",
        fontsize=10,
    )
    ax.set_xticks(range(len(systems)), systems, rotation=30, ha="right", fontsize=8)
    ax.legend()
    fig.tight_layout()
    latency = out / f"{stem}-latency.png"
    fig.savefig(latency, dpi=80)
    plt.close(fig)
    return [figures, latency]


def write_all(document: dict[str, Any], out: Path) -> list[Path]:
    """Write ``<out>/<stamp>.json``, ``.md`` and the PNGs; their paths."""
    out.mkdir(parents=True, exist_ok=True)
    stem = document["stamp"]
    summary = summarize(document)
    for record in document["systems"].values():  # microseconds are plenty
        for cell in record["workloads"].values():
            cell["latencies_ms"] = [round(value, 3) for value in cell["latencies_ms"]]
    document = {**document, "summary": summary}
    json_path = out / f"{stem}.json"
    json_path.write_text(json.dumps(document, indent=1) + "\n")
    md_path = out / f"{stem}.md"
    md_path.write_text(markdown(document, summary, stem))
    return [json_path, md_path, *plots(document, summary, out, stem)]


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.peers.report RESULT.json [--stamp S] [--out DIR]``: render it again."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.peers.report", description=main.__doc__)
    parser.add_argument("result", type=Path, help="a suite's JSON")
    parser.add_argument("--stamp", help="a new file name stem (and title)")
    parser.add_argument("--out", type=Path, help="where to write (default: next to the JSON)")
    args = parser.parse_args(argv)
    document = json.loads(args.result.read_text())
    document.pop("summary", None)
    if args.stamp:
        document["stamp"] = args.stamp
    for path in write_all(document, args.out or args.result.parent):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
