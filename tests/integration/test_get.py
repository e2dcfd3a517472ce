"""``cachecluster get``: Fluid's columns and figures against a real local cluster.

After the whole dataset is read once, CACHED equals UFS TOTAL SIZE and the
percentage is ``100.0%``; a subpath reference mirrors the source's figures
restricted to its subtree.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cachecluster.cli.get_cmds import (
    human_duration,
    parse_kinds,
    percentage,
    render_table,
    runtime_kinds,
)
from cachecluster.cli.main import main
from cachecluster.client.sync_client import Client
from cachecluster.common.errors import InvalidArgument
from cachecluster.local.cluster import LocalCluster
from cachecluster.local.cluster_calls import apply_dataset_async, run_sync
from tests.integration.conftest import generate, write_tree

BLOCK = 1 << 20
FILES = {
    "top.bin": 2 * BLOCK + 5,
    "dir/a.bin": BLOCK,
    "dir/sub/b.bin": 3 * BLOCK + 1,
    "dir/empty.bin": 0,
}
DIR_TOTAL = sum(size for name, size in FILES.items() if name.startswith("dir/"))
TOTAL = sum(FILES.values())
DATASET_HEADER = [
    "NAME",
    "UFS TOTAL SIZE",
    "CACHED",
    "CACHE CAPACITY",
    "CACHED PERCENTAGE",
    "PHASE",
    "AGE",
]


# -- formatting ------------------------------------------------------------------


def test_ages_as_kubectl_prints_them() -> None:
    cases = {0: "0s", 45: "45s", 119: "119s", 241: "4m1s", 300: "5m", 900: "15m"}
    cases |= {3 * 3600 + 60: "3h1m", 9 * 3600: "9h", 3 * 86400 + 16 * 3600: "3d16h"}
    cases |= {20 * 86400: "20d", 3 * 365 * 86400 + 86400: "3y1d"}
    assert {s: human_duration(s) for s in cases} == cases


def test_percentages_round_down() -> None:
    assert percentage(100.0) == "100.0%"
    assert percentage(99.97) == "99.9%"
    assert percentage(0) == "0.0%"
    assert percentage(-1) == "-"


def test_table_is_aligned_without_borders() -> None:
    text = render_table(["NAME", "PHASE"], [["shared-dataset", "Bound"], ["x", "NotBound"]])
    lines = text.splitlines()
    assert lines[0] == "NAME             PHASE"
    assert lines[1] == "shared-dataset   Bound"
    assert lines[2] == "x                NotBound"


def test_kinds() -> None:
    assert parse_kinds("dataset,jindoruntime") == ["datasets", "runtimes"]
    assert parse_kinds("dataset.data.fluid.io") == ["datasets"]
    assert parse_kinds("DataLoads") == ["dataloads"]
    with pytest.raises(InvalidArgument, match="unknown resource type"):
        parse_kinds("pods")
    assert runtime_kinds("runtimes") is None
    assert runtime_kinds("dataset,jindoruntime") == {"jindoruntime"}
    assert runtime_kinds("jindo,JuiceFSRuntimes") == {"jindoruntime", "juicefsruntime"}


# -- against a cluster ---------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("get")
    write_tree(root / "ufs", generate(FILES))
    local = LocalCluster(root / "home", workers=2, block_size=BLOCK, replicas=1)
    with local:
        local.apply_dataset("share", "src", f"local://{root / 'ufs'}")
        run_sync(
            apply_dataset_async(
                local.master_address,
                "ref",
                "sub",
                {"mounts": [{"mountPoint": "dataset://share/src/dir"}]},
            )
        )
        yield local


def get(cluster: LocalCluster, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    code = main(["get", *args, "--master", cluster.master_address])
    out = capsys.readouterr().out
    assert code == 0, out
    return out


def get_json(cluster: LocalCluster, capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    return json.loads(get(cluster, capsys, *args, "-o", "json", "--refresh"))


def columns(line: str) -> list[str]:
    return re.split(r" {2,}", line.strip())


def test_figures_before_and_after_a_full_read(
    cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    (before,) = get_json(cluster, capsys, "datasets", "-n", "share")
    assert before["name"] == "src" and before["phase"] == "Bound"
    assert before["ufsTotalBytes"] == TOTAL
    assert before["fileCount"] == len(FILES)
    assert before["cacheCapacityBytes"] > 0
    assert before["cachedBytes"] < TOTAL

    with Client(cluster.master_address) as client:
        for name in FILES:
            assert len(client.cat(f"share/src/{name}")) == FILES[name]

    deadline = time.monotonic() + 30
    while True:
        (after,) = get_json(cluster, capsys, "datasets", "-n", "share")
        if after["cachedBytes"] == TOTAL or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert after["cachedBytes"] == after["ufsTotalBytes"] == TOTAL
    assert after["cachedPercentage"] == "100.0%"
    assert after["cached"] == after["ufsTotal"]

    table = get(cluster, capsys, "datasets", "-n", "share").splitlines()
    assert columns(table[0]) == DATASET_HEADER
    row = columns(table[1])
    assert row[0] == "src" and row[4] == "100.0%" and row[5] == "Bound"
    assert re.fullmatch(r"\d+(\.\d+)?s|\d+m\d*s?", row[6])

    # the reference mirrors the source, restricted to its subpath
    (mirror,) = get_json(cluster, capsys, "dataset", "sub", "-n", "ref")
    assert mirror["reference"] == "dataset://share/src/dir"
    assert mirror["ufsTotalBytes"] == mirror["cachedBytes"] == DIR_TOTAL
    assert mirror["cachedPercentage"] == "100.0%"
    assert mirror["fileCount"] == 3
    assert mirror["accessModes"] == ["ReadOnlyMany"]


def test_wide_all_namespaces_and_yaml(
    cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    wide = get(cluster, capsys, "datasets", "-A", "-o", "wide").splitlines()
    header = columns(wide[0])
    assert header[0] == "NAMESPACE"
    assert header[-3:] == ["FILE COUNT", "CACHE HIT RATIO", "AGE"]
    rows = [columns(line) for line in wide[1:]]
    assert [(row[0], row[1]) for row in rows] == [("ref", "sub"), ("share", "src")]
    assert rows[1][header.index("FILE COUNT")] == str(len(FILES))
    assert re.fullmatch(r"\d+\.\d%|-", rows[1][header.index("CACHE HIT RATIO")])

    docs = yaml.safe_load(get(cluster, capsys, "datasets", "-n", "share", "-o", "yaml"))
    assert docs[0]["name"] == "src" and docs[0]["ufsTotalBytes"] == TOTAL

    assert "No resources found in nobody namespace." in get(
        cluster, capsys, "datasets", "-n", "nobody"
    )


def test_missing_dataset_fails_with_not_found(
    cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["get", "dataset", "nope", "-n", "share", "--master", cluster.master_address])
    assert code != 0
    assert "nope" in capsys.readouterr().err


def test_deleting_a_referenced_source_is_refused(
    cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["dataset", "rm", "share/src", "--master", cluster.master_address])
    err = capsys.readouterr().err
    assert code != 0
    assert "referenced by ref/sub" in err


def test_mounts_added_and_removed_on_a_live_dataset(
    cluster: LocalCluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    write_tree(tmp_path / "one", {"a.bin": b"a" * 100})
    write_tree(tmp_path / "two", {"b.bin": b"b" * 200, "deep/c.bin": b"c" * 300})
    one = {"mountPoint": f"local://{tmp_path / 'one'}", "name": "one", "path": "/one"}
    two = {"mountPoint": f"local://{tmp_path / 'two'}", "name": "two", "path": "/two"}

    def apply(namespace: str, name: str, spec: dict[str, Any]) -> None:
        run_sync(apply_dataset_async(cluster.master_address, namespace, name, spec))

    apply("share", "live", {"mounts": [one]})
    apply("ref", "live", {"mounts": [{"mountPoint": "dataset://share/live"}]})
    with Client(cluster.master_address, metadata_ttl=0.1) as client:

        def walk(path: str) -> list[str]:
            found: list[str] = []
            for entry in client.ls(f"ref/live/{path}".rstrip("/"), detail=True):
                rel = entry.path.split("/", 2)[2]
                found.extend(walk(rel) if entry.is_dir else [rel])
            return sorted(found)

        assert walk("") == ["one/a.bin"]
        apply("share", "live", {"mounts": [one, two]})
        time.sleep(0.2)  # the client's metadata TTL; the master sees the change at once
        assert walk("") == ["one/a.bin", "two/b.bin", "two/deep/c.bin"]
        assert client.cat("ref/live/two/deep/c.bin") == b"c" * 300
        (mirror,) = get_json(cluster, capsys, "dataset", "live", "-n", "ref")
        assert mirror["ufsTotalBytes"] == 600 and mirror["fileCount"] == 3

        apply("share", "live", {"mounts": [two]})
        time.sleep(0.2)
        assert walk("") == ["two/b.bin", "two/deep/c.bin"]  # one/ is gone
        (mirror,) = get_json(cluster, capsys, "dataset", "live", "-n", "ref")
        assert mirror["ufsTotalBytes"] == 500
