"""The seeds' flow end to end (issue 4's first "Must show"), with SeaweedFS as the UFS.

Namespace ``share`` holds the seed's Secret + Dataset + JindoRuntime (Fluid's
apiVersion kept; only the mountPoint and endpoint changed: ``s3://bucket/dir``
with ``fs.s3.endpoint``/``fs.s3.pathStyle``, credentials in the Secret through
``encryptOptions``); namespace ``ref`` holds ``dataset://share/shared-dataset``.
A DataLoad brings CACHED PERCENTAGE to 100.0% and PHASE Complete; a reader in
``ref`` (with a ``ref`` token) reads the same bytes, served from the cache:
worker hits rise, bytes fetched from the UFS do not; ``ref`` has no cache of
its own.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cachecluster.cli.main import main
from cachecluster.client.sync_client import Client
from cachecluster.common import auth
from cachecluster.local.cluster import LocalCluster
from tests.integration.conftest import held_blocks
from tests.metrics import metric_samples
from tests.servers.seaweed import SeaweedS3

BLOCK = 1 << 20
BUCKET = "seed-bucket"
PREFIX = "bert"
FILES = {
    "wwm_uncased_L-24_H-1024_A-16.zip": 6 * BLOCK + 4321,
    "vocab.txt": 230_000,
    "config/bert_config.json": 512,
}

SHARED_DATASET_YAML = """\
apiVersion: v1
kind: Secret
metadata:
  name: dataset-secret
  namespace: share
stringData:
  fs.s3.accessKeyId: {access_key}
  fs.s3.accessKeySecret: {secret_key}
---
# Dataset: describes the data stored in OSS (the underlying file system, UFS).
apiVersion: data.fluid.io/v1alpha1
kind: Dataset
metadata:
  name: shared-dataset
  namespace: share
spec:
  mounts:
  - mountPoint: s3://{bucket}/{prefix} # Path to the data in your OSS bucket.
    options:
      fs.s3.endpoint: {endpoint} # Endpoint of your OSS bucket.
      fs.s3.pathStyle: "true"
    name: hadoop
    path: "/"
    encryptOptions:
      - name: fs.s3.accessKeyId
        valueFrom:
          secretKeyRef:
            name: dataset-secret
            key: fs.s3.accessKeyId
      - name: fs.s3.accessKeySecret
        valueFrom:
          secretKeyRef:
            name: dataset-secret
            key: fs.s3.accessKeySecret
---
# JindoRuntime: enables JindoFS-based data caching in the cluster.
apiVersion: data.fluid.io/v1alpha1
kind: JindoRuntime
metadata:
  name: shared-dataset
  namespace: share
spec:
  replicas: 1
  tieredstore:
    levels:
      - mediumtype: MEM
        path: /dev/shm
        quota: 4Gi
        high: "0.95"
        low: "0.7"
"""

REF_DATASET_YAML = """\
apiVersion: data.fluid.io/v1alpha1
kind: Dataset
metadata:
  name: ref-dataset
  namespace: ref
spec:
  mounts:
  - mountPoint: dataset://share/shared-dataset
"""

DATALOAD_YAML = """\
apiVersion: data.fluid.io/v1alpha1
kind: DataLoad
metadata:
  name: shared-dataset-warmup
  namespace: share
spec:
  dataset:
    name: shared-dataset
    namespace: share
  loadMetadata: true
"""


@pytest.fixture(scope="module")
def contents() -> dict[str, bytes]:
    rng = random.Random(4)
    return {name: rng.randbytes(size) for name, size in FILES.items()}


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, s3_server: SeaweedS3, contents: dict[str, bytes]
) -> Iterator[LocalCluster]:
    s3_server.create_bucket(BUCKET)
    s3 = s3_server.client()
    for name, data in contents.items():
        s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{name}", Body=data)
    home = tmp_path_factory.mktemp("seeds") / "home"
    local = LocalCluster(home, workers=1, block_size=BLOCK, replicas=1, auth=True)
    with local:
        yield local


def cli(cluster: LocalCluster, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run ``cachecluster ARGS``; return stdout, failing on an error."""
    capsys.readouterr()
    code = main([*args, "--home", str(cluster.layout.home), "--master", cluster.master_address])
    captured = capsys.readouterr()
    assert code == 0, f"cachecluster {' '.join(args)}: {captured.err}"
    return captured.out


def get_json(cluster: LocalCluster, capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    return json.loads(cli(cluster, capsys, "get", *args, "-o", "json", "--refresh"))


def columns(line: str) -> list[str]:
    return re.split(r" {2,}", line.strip())


def counters(cluster: LocalCluster) -> tuple[float, float]:
    """(block hits, bytes fetched from the UFS) summed over the workers' Prometheus counters."""
    hits = fetched = 0.0
    for worker in cluster.workers:
        for sample in metric_samples(worker.metrics_port, worker.host):
            if sample.name == "cachecluster_worker_block_hits_total":
                hits += sample.value
            elif sample.name == "cachecluster_worker_bytes_fetched_total":
                fetched += sample.value
    return hits, fetched


def test_seed_flow(
    cluster: LocalCluster,
    s3_server: SeaweedS3,
    contents: dict[str, bytes],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    total = sum(FILES.values())
    # every command runs as the cluster admin unless it passes --token
    monkeypatch.setenv("CACHECLUSTER_TOKEN", cluster.token(auth.ADMIN_NAMESPACE))
    shared = tmp_path / "shared-dataset.yaml"
    shared.write_text(
        SHARED_DATASET_YAML.format(
            access_key=s3_server.access_key,
            secret_key=s3_server.secret_key,
            bucket=BUCKET,
            prefix=PREFIX,
            endpoint=s3_server.endpoint,
        )
    )
    out = cli(cluster, capsys, "apply", "-f", str(shared))
    assert "dataset.data.fluid.io/shared-dataset created" in out
    assert "jindoruntime.data.fluid.io/shared-dataset created" in out
    assert s3_server.secret_key not in out

    ref = tmp_path / "ref-dataset.yaml"
    ref.write_text(REF_DATASET_YAML)
    assert "dataset.data.fluid.io/ref-dataset created" in cli(
        cluster, capsys, "apply", "-f", str(ref)
    )

    # kubectl get dataset,jindoruntime -n share
    tables = cli(cluster, capsys, "get", "dataset,jindoruntime", "-n", "share", "--refresh")
    dataset_table, runtime_table = (block.splitlines() for block in tables.strip().split("\n\n"))
    assert columns(dataset_table[0]) == [
        "NAME",
        "UFS TOTAL SIZE",
        "CACHED",
        "CACHE CAPACITY",
        "CACHED PERCENTAGE",
        "PHASE",
        "AGE",
    ]
    row = columns(dataset_table[1])
    assert row[0] == "shared-dataset" and row[5] == "Bound"
    assert row[2] == "0.00B" and row[4] == "0.0%" and row[3] == "4.00GiB"
    assert columns(runtime_table[0]) == [
        "NAME",
        "MASTER PHASE",
        "WORKER PHASE",
        "FUSE PHASE",
        "AGE",
    ]
    assert columns(runtime_table[1])[:4] == ["shared-dataset", "Ready", "Ready", "Ready"]
    assert re.fullmatch(r"\d+s|\d+m\d*s?", columns(runtime_table[1])[4])
    assert "No resources found" in cli(cluster, capsys, "get", "juicefsruntime", "-n", "share")

    # the DataLoad warms the whole dataset
    load = tmp_path / "dataload.yaml"
    load.write_text(DATALOAD_YAML)
    cli(cluster, capsys, "apply", "-f", str(load))
    deadline = time.monotonic() + 60
    while True:
        (row_doc,) = get_json(cluster, capsys, "dataloads", "-n", "share")
        if row_doc["phase"] in ("Complete", "Failed") or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert row_doc["phase"] == "Complete", row_doc
    loads = cli(cluster, capsys, "get", "dataloads", "-n", "share").splitlines()
    assert columns(loads[0]) == ["NAME", "DATASET", "PHASE", "AGE", "DURATION"]
    assert columns(loads[1])[:3] == ["shared-dataset-warmup", "shared-dataset", "Complete"]

    deadline = time.monotonic() + 30
    while True:
        (source,) = get_json(cluster, capsys, "datasets", "-n", "share")
        if source["cachedPercentage"] == "100.0%" or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert source["cachedPercentage"] == "100.0%", source
    assert source["cachedBytes"] == source["ufsTotalBytes"] == total
    assert source["phase"] == "Bound"

    # a reader in namespace ref: the same bytes, from the cache
    blocks_before = {worker.worker_id: held_blocks(worker) for worker in cluster.workers}
    hits, fetched = counters(cluster)
    assert fetched >= total  # the DataLoad fetched every byte from the UFS
    with Client(cluster.master_address, token=cluster.token("ref")) as client:
        for name, data in contents.items():
            got = client.cat(f"ref/ref-dataset/{name}")
            assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest(), name
    hits_after, fetched_after = counters(cluster)
    assert hits_after > hits
    assert fetched_after == fetched
    assert {w.worker_id: held_blocks(w) for w in cluster.workers} == blocks_before

    # ref has no cache of its own: it mirrors the source's figures, has no
    # runtime, and a ref token sees nothing of share
    (mirror,) = get_json(cluster, capsys, "dataset", "ref-dataset", "-n", "ref")
    assert mirror["reference"] == "dataset://share/shared-dataset"
    assert mirror["ufsTotalBytes"] == mirror["cachedBytes"] == total
    assert mirror["cachedPercentage"] == "100.0%"
    assert "No resources found" in cli(cluster, capsys, "get", "runtimes", "-n", "ref")
    ref_token = cluster.token("ref")
    assert "No resources found" in cli(
        cluster, capsys, "get", "datasets", "-n", "share", "--token", ref_token
    )
    everything = cli(cluster, capsys, "get", "datasets", "-A", "-o", "yaml")
    assert s3_server.secret_key not in everything and s3_server.access_key not in everything
