"""``cachecluster apply -f`` against a real local cluster with S3 (SeaweedFS) as the UFS.

The seed's YAML (shared/seeds/000, JindoRuntime variant) with only the
endpoint and the bucket changed (and, S3 being the UFS here, ``s3://`` and
``fs.s3.*`` names plus ``fs.s3.pathStyle``): Secret + Dataset + JindoRuntime
in one call. The runtime restarts the worker with its tieredstore, then a
change of ``replicas`` from 1 to 2 starts a second worker. Secret values
appear in no command's output; malformed files change nothing; a master
restart keeps secrets, runtimes and datasets.
"""

from __future__ import annotations

import io
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import oss2
import pytest

from cachecluster.cli.main import main
from cachecluster.client.sync_client import Client
from cachecluster.local.cluster import LocalCluster
from cachecluster.local.layout import ClusterLayout
from cachecluster.master.secrets import SECRETS_FILE
from cachecluster.protos import master_pb2
from tests.api import seeds
from tests.api.test_documents import MALFORMED
from tests.integration.conftest import generate, sha256
from tests.servers.oss_server import OssTestServer
from tests.servers.seaweed import SeaweedS3

BUCKET = "apply-it"
BUCKET_DIR = "models"
FILES = {"wwm.zip": 3 * (1 << 20) + 17, "vocab.txt": 4096}


def s3_dataset_yaml(server: SeaweedS3) -> str:
    """The seed's shared-dataset.yaml over S3: endpoint and bucket changed, pathStyle added."""
    text = seeds.s3_form(
        seeds.SHARED_DATASET.format(bucket=BUCKET, bucket_dir=BUCKET_DIR, endpoint=server.endpoint)
    )
    endpoint_line = f"      fs.s3.endpoint: {server.endpoint} # Endpoint of your OSS bucket.\n"
    assert endpoint_line in text
    return text.replace(
        endpoint_line,
        endpoint_line + '      fs.s3.pathStyle: "true"\n      fs.s3.region: us-east-1\n',
    )


def secret_yaml(server: SeaweedS3) -> str:
    return seeds.s3_form(
        seeds.SHARE_SECRET.format(key_id=server.access_key, key_secret=server.secret_key)
    )


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    home = tmp_path / "cc"
    local = LocalCluster(
        home,
        workers=1,
        block_size="1Mi",
        replicas=1,
        master_args=["--heartbeat-interval", "0.5", "--missed-heartbeats", "4"],
    )
    local.start()
    try:
        yield local
    finally:
        # apply may have started workers this object does not know: stop what is recorded.
        try:
            LocalCluster.attach(home).stop()
        finally:
            local.stop()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def state(cluster: LocalCluster) -> tuple[str, str, str]:
    """Datasets, runtimes and secrets (names and keys) as the master lists them."""
    import asyncio

    import grpc

    from cachecluster.protos import master_pb2_grpc, resources_pb2, resources_pb2_grpc

    async def fetch() -> tuple[str, str, str]:
        async with grpc.aio.insecure_channel(cluster.master_address) as channel:
            datasets = await master_pb2_grpc.DatasetServiceStub(channel).ListDatasets(
                master_pb2.ListDatasetsRequest()
            )
            resources = resources_pb2_grpc.ResourceServiceStub(channel)
            runtimes = await resources.ListRuntimes(resources_pb2.ListRuntimesRequest())
            secrets = await resources.ListSecrets(resources_pb2.ListSecretsRequest())
            return str(datasets), str(runtimes), str(secrets)

    return asyncio.run(fetch())


def test_apply_seed_yaml_secrets_runtime_scaling_and_restart(
    cluster: LocalCluster,
    s3_server: SeaweedS3,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    s3_server.create_bucket(BUCKET)
    contents = generate(FILES)
    s3 = s3_server.client()
    for name, data in contents.items():
        s3.put_object(Bucket=BUCKET, Key=f"{BUCKET_DIR}/{name}", Body=data)
    home = str(cluster.home)
    secret_values = (s3_server.access_key, s3_server.secret_key)

    # Secret + Dataset + JindoRuntime in one call, as the seed applies them.
    path = tmp_path / "shared-dataset.yaml"
    path.write_text(secret_yaml(s3_server) + "---\n" + s3_dataset_yaml(s3_server))
    code, out, err = run(capsys, "apply", "-f", str(path), "--home", home)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:3] == [
        "secret/dataset-secret created",
        "dataset.data.fluid.io/shared-dataset created",
        "jindoruntime.data.fluid.io/shared-dataset created",
    ]
    assert lines[3] == "restarting worker w0 to apply tieredstore: MEM /dev/shm 4Gi"
    outputs = [out, err]

    attached = LocalCluster.attach(cluster.home)
    (worker,) = attached.workers
    (tier,) = worker.tiers
    layout = ClusterLayout(cluster.home)
    assert (tier.path, tier.quota) == (str(layout.shm_root / "w0"), 4 << 30)

    with Client(cluster.master_address) as client:
        for name, data in contents.items():
            assert sha256(client.cat(f"share/shared-dataset/{name}")) == sha256(data)

    # The same file again: nothing changes, no worker restarts.
    code, out, err = run(capsys, "apply", "-f", str(path), "--home", home)
    assert code == 0, err
    assert out.splitlines() == [
        "secret/dataset-secret unchanged",
        "dataset.data.fluid.io/shared-dataset unchanged",
        "jindoruntime.data.fluid.io/shared-dataset unchanged",
    ]
    outputs += [out, err]

    # replicas 1 -> 2 starts a second worker with its own tier folder.
    scaled = tmp_path / "scaled.yaml"
    scaled.write_text(s3_dataset_yaml(s3_server).replace("replicas: 1", "replicas: 2"))
    code, out, err = run(capsys, "apply", "-f", str(scaled), "--home", home)
    assert code == 0, err
    assert out.splitlines() == [
        "dataset.data.fluid.io/shared-dataset unchanged",
        "jindoruntime.data.fluid.io/shared-dataset configured",
        "started worker w1 (replicas: 2)",
    ]
    attached = LocalCluster.attach(cluster.home)
    assert [w.worker_id for w in attached.workers] == ["w0", "w1"]
    assert attached.workers[1].tiers[0].path == str(layout.shm_root / "w1")
    attached.wait_active(timeout=30)

    # The reference dataset of the seed, and a reference to it (a chain) refused.
    ref_path = tmp_path / "ref-dataset.yaml"
    ref_path.write_text(seeds.REF_DATASET)
    code, out, err = run(capsys, "apply", "-f", str(ref_path), "--home", home)
    assert (code, out) == (0, "dataset.data.fluid.io/ref-dataset created\n"), err
    chain = tmp_path / "chain.yaml"
    chain.write_text(
        seeds.REF_DATASET.replace("ref-dataset", "chained").replace(
            "dataset://share/shared-dataset", "dataset://ref/ref-dataset"
        )
    )
    before = state(cluster)
    code, out, err = run(capsys, "apply", "-f", str(chain), "--home", home)
    assert code != 0 and out == ""
    assert err.strip() == (
        f"cachecluster apply: {chain} doc 1 (Dataset ref/chained): spec.mounts[0].mountPoint: "
        "references ref/ref-dataset, which is itself a reference (to "
        "dataset://share/shared-dataset): references cannot chain; reference the source "
        "dataset directly"
    )
    assert state(cluster) == before

    # Every command that shows datasets or runtimes: no secret value anywhere.
    for argv in (
        ["get", "datasets", "-A"],
        ["get", "datasets", "-n", "share", "-o", "json"],
        ["get", "datasets", "-n", "share", "-o", "yaml"],
        ["get", "datasets", "-A", "-o", "wide"],
        ["get", "runtimes", "-A"],
        ["dataset", "ls", "-o", "json"],
        ["dataset", "ls"],
    ):
        code, out, err = run(capsys, *argv, "--home", home)
        assert code == 0, (argv, err)
        outputs += [out, err]
    assert "shared-dataset" in "".join(outputs)
    outputs += [p.read_text(errors="replace") for p in (cluster.home / "logs").glob("*.log")]
    for text in outputs:
        for value in secret_values:
            assert value not in text

    # Stored 0600; a master restart keeps secrets, runtimes and datasets.
    secrets_file = layout.master_home / SECRETS_FILE
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    before = state(cluster)
    attached.restart_master()
    attached.wait_active(timeout=30)
    assert state(cluster) == before
    with Client(cluster.master_address) as client:
        assert client.cat("share/shared-dataset/vocab.txt") == contents["vocab.txt"]

    # delete: the source cannot go while referenced; the reference can.
    code, out, err = run(capsys, "delete", "dataset", "share/shared-dataset", "--home", home)
    assert code != 0 and "referenced by ref/ref-dataset" in err
    code, out, err = run(capsys, "delete", "-f", str(ref_path), "--home", home)
    assert (code, out) == (0, "dataset.data.fluid.io/ref-dataset deleted\n"), err

    # replicas 2 -> 1 stops the extra worker (and drops its MEM tier).
    code, out, err = run(capsys, "apply", "-f", str(path), "--home", home)
    assert code == 0, err
    assert out.splitlines()[-2:] == [
        "jindoruntime.data.fluid.io/shared-dataset configured",
        "stopped worker w1 (replicas: 1)",
    ]
    assert [w.worker_id for w in LocalCluster.attach(cluster.home).workers] == ["w0"]
    assert not (layout.shm_root / "w1").exists()
    with Client(cluster.master_address) as client:
        assert client.cat("share/shared-dataset/vocab.txt") == contents["vocab.txt"]


MASTER_SIDE = [
    (
        "apiVersion: data.fluid.io/v1alpha1\nkind: Dataset\nmetadata: {name: d, namespace: n}\n"
        "spec:\n  mounts:\n  - mountPoint: s3://b/x\n    encryptOptions:\n"
        "    - {name: k, valueFrom: {secretKeyRef: {name: nosuch, key: k}}}\n",
        "bad.yaml doc 1 (Dataset n/d): spec.mounts[0].encryptOptions[0].valueFrom.secretKeyRef: "
        "secret n/nosuch does not exist (apply it first)",
    ),
    (
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: n}\nstringData: {a: b}\n"
        "---\napiVersion: data.fluid.io/v1alpha1\nkind: Dataset\n"
        "metadata: {name: d, namespace: n}\n"
        "spec:\n  mounts:\n  - mountPoint: s3://b/x\n  sharedEncryptOptions:\n"
        "  - {name: k, valueFrom: {secretKeyRef: {name: s, key: missing}}}\n",
        "bad.yaml doc 2 (Dataset n/d): spec.sharedEncryptOptions[0].valueFrom.secretKeyRef: "
        "secret n/s has no key 'missing' (keys: a)",
    ),
    (
        "apiVersion: data.fluid.io/v1alpha1\nkind: Dataset\nmetadata: {name: d, namespace: n}\n"
        "spec: {mounts: [{mountPoint: 'dataset://share/nosuch'}]}\n",
        "bad.yaml doc 1 (Dataset n/d): spec.mounts[0].mountPoint: references share/nosuch, "
        "which does not exist (apply the source first)",
    ),
    (
        "apiVersion: data.fluid.io/v1alpha1\nkind: DataLoad\nmetadata: {name: l, namespace: n}\n"
        "spec: {dataset: {name: nosuch}}\n",
        "bad.yaml doc 1 (DataLoad n/l): spec.dataset: dataset n/nosuch does not exist",
    ),
    (
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: n}\nstringData: {a: b}\n"
        "---\napiVersion: data.fluid.io/v1alpha1\nkind: JindoRuntime\n"
        "metadata: {name: r, namespace: n}\nspec: {replicas: 0}\n",
        "bad.yaml doc 2 (JindoRuntime n/r): spec.replicas: 0 is not an integer >= 1",
    ),
]


def test_malformed_files_give_one_line_and_change_nothing(
    cluster: LocalCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = str(cluster.home)
    before = state(cluster)
    path = tmp_path / "bad.yaml"
    cases = [*MALFORMED, *MASTER_SIDE]
    assert len(cases) >= 15
    for text, expected in cases:
        path.write_text(text)
        code, out, err = run(capsys, "apply", "-f", str(path), "--home", home)
        assert code == 64, (expected, err)
        assert out == ""
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith(f"cachecluster apply: {path.parent}/{expected}"), lines[0]
    assert state(cluster) == before


def test_oss_seeds_verbatim_with_dataload_wait(
    cluster: LocalCluster,
    oss_server: OssTestServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Seeds 000 (JindoRuntime) and 003 as written, but for the endpoint and the bucket."""
    bucket = oss2.Bucket(
        oss2.Auth(oss_server.access_key_id, oss_server.access_key_secret),
        oss_server.endpoint,
        "seed-bucket",
    )
    bucket.create_bucket()
    contents = generate({"wwm_uncased_L-24_H-1024_A-16.zip": 2 * (1 << 20) + 5})
    for name, data in contents.items():
        bucket.put_object(f"bert/{name}", data)
    home = str(cluster.home)
    places = {"bucket": "seed-bucket", "bucket_dir": "bert", "endpoint": oss_server.endpoint}
    keys = {"key_id": oss_server.access_key_id, "key_secret": oss_server.access_key_secret}

    # 000: the Secret by stdin (kubectl apply -f - <<EOF), then shared-dataset.yaml.
    shared = tmp_path / "shared-dataset.yaml"
    shared.write_text(seeds.SHARED_DATASET.format(**places))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stdin", io.StringIO(seeds.SHARE_SECRET.format(**keys)))
        code, out, err = run(capsys, "apply", "-f", "-", "--home", home)
    assert (code, out) == (0, "secret/dataset-secret created\n"), err
    code, out, err = run(capsys, "apply", "-f", str(shared), "--home", home)
    assert code == 0, err
    assert out.splitlines()[:2] == [
        "dataset.data.fluid.io/shared-dataset created",
        "jindoruntime.data.fluid.io/shared-dataset created",
    ]
    outputs = [out, err]

    # A DataLoad of the dataset, followed to its end.
    load = tmp_path / "dataload.yaml"
    load.write_text(
        "apiVersion: data.fluid.io/v1alpha1\nkind: DataLoad\n"
        "metadata: {name: warm, namespace: share}\n"
        "spec:\n  dataset: {name: shared-dataset, namespace: share}\n"
    )
    code, out, err = run(capsys, "apply", "-f", str(load), "--wait", "--home", home)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "dataload.data.fluid.io/warm created"
    assert lines[1].startswith("dataload share/warm Complete: 1/1 files"), out
    outputs += [out, err]

    # 003: secret.yaml and dataset.yaml in namespace default.
    secret3 = tmp_path / "secret.yaml"
    secret3.write_text(seeds.SERVERLESS_SECRET.format(**keys))
    dataset3 = tmp_path / "dataset.yaml"
    dataset3.write_text(seeds.SERVERLESS_DATASET.format(**places))
    code, out, err = run(capsys, "apply", "-f", str(secret3), "--home", home)
    assert (code, out) == (0, "secret/access-key created\n"), err
    code, out, err = run(capsys, "apply", "-f", str(dataset3), "--home", home)
    assert code == 0, err
    assert out.splitlines() == [
        "dataset.data.fluid.io/serverless-data created",
        "jindoruntime.data.fluid.io/serverless-data created",
        "restarting worker w0 to apply tieredstore: MEM /dev/shm 5Gi",
    ]
    outputs += [out, err]

    with Client(cluster.master_address) as client:
        for name, data in contents.items():
            assert client.cat(f"share/shared-dataset/{name}") == data
            assert client.cat(f"default/serverless-data/{name}") == data
    for argv in (["get", "datasets", "-A", "-o", "yaml"], ["get", "runtimes", "-A"]):
        code, out, err = run(capsys, *argv, "--home", home)
        assert code == 0, err
        outputs += [out, err]
    logs = [p.read_text(errors="replace") for p in (cluster.home / "logs").glob("*.log")]
    for text in outputs + logs:
        assert oss_server.access_key_secret not in text

    # delete by kind: the runtime is named as it was applied; a second delete finds nothing.
    argv = ["delete", "runtime", "default/serverless-data", "--home", home]
    code, out, err = run(capsys, *argv)
    assert (code, out) == (0, "jindoruntime.data.fluid.io/serverless-data deleted\n"), err
    code, out, err = run(capsys, *argv)
    assert code == 66 and "not found" in err


def test_apply_on_a_cluster_with_auth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The local admin applies without --token; a namespace token only into its namespace."""
    home = tmp_path / "auth"
    data = tmp_path / "data"
    data.mkdir()
    (data / "f.txt").write_bytes(b"hello")
    text = (
        "apiVersion: v1\nkind: Secret\nmetadata: {name: creds, namespace: team}\n"
        "stringData: {token: TOPSECRETTOKENVALUE}\n---\n"
        "apiVersion: cachecluster.io/v1alpha1\nkind: Dataset\n"
        "metadata: {name: data, namespace: team}\n"
        f"spec:\n  mounts:\n  - mountPoint: local://{data}\n"
        "---\napiVersion: cachecluster.io/v1alpha1\nkind: CacheRuntime\n"
        "metadata: {name: data, namespace: team}\n"
        "spec:\n  replicas: 1\n  tieredstore:\n    levels:\n"
        f"    - {{mediumtype: SSD, path: {tmp_path / 'ssd'}, quota: 64Mi}}\n"
    )
    path = tmp_path / "team.yaml"
    path.write_text(text)
    with LocalCluster(home, workers=1, block_size="1Mi", auth=True) as cluster:
        code, out, err = run(capsys, "apply", "-f", str(path), "--home", str(home))
        assert code == 0, err
        assert out.splitlines() == [
            "secret/creds created",
            "dataset.cachecluster.io/data created",
            "cacheruntime.cachecluster.io/data created",
            f"restarting worker w0 to apply tieredstore: SSD {tmp_path / 'ssd'} 64Mi",
        ]
        assert LocalCluster.attach(home).workers[0].tiers[0].path == str(tmp_path / "ssd" / "w0")
        other = cluster.token("other")
        code, out, err = run(
            capsys, "apply", "-f", str(path), "--home", str(home), "--token", other
        )
        assert code != 0 and out == ""
        assert "a token for namespace 'other' cannot change" in err
        own = cluster.token("team")
        code, out, err = run(capsys, "apply", "-f", str(path), "--home", str(home), "--token", own)
        assert code == 0, err
        assert out.splitlines() == [
            "secret/creds unchanged",
            "dataset.cachecluster.io/data unchanged",
            "cacheruntime.cachecluster.io/data unchanged",
        ]
        assert "TOPSECRETTOKENVALUE" not in out + err


TTL = 0.3


def test_mounts_added_and_removed_on_a_live_dataset(
    cluster: LocalCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Apply again with another mount: a client that is already open sees it, then not
    (once its cached listings are older than its ``metadata_ttl``)."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.txt").write_bytes(name.encode() * 3)

    def dataset(*names: str) -> str:
        mounts = "".join(
            f"  - {{mountPoint: 'local://{tmp_path / n}', name: {n}, path: /{n}}}\n" for n in names
        )
        return (
            "apiVersion: data.fluid.io/v1alpha1\nkind: Dataset\n"
            f"metadata: {{name: live, namespace: ns}}\nspec:\n  mounts:\n{mounts}"
        )

    path = tmp_path / "live.yaml"
    home = str(cluster.home)
    path.write_text(dataset("a"))
    assert run(capsys, "apply", "-f", str(path), "--home", home)[0] == 0
    with Client(cluster.master_address, metadata_ttl=TTL) as client:
        assert client.cat("ns/live/a/a.txt") == b"aaa"
        assert sorted(client.ls("ns/live")) == ["ns/live/a"]
        path.write_text(dataset("a", "b"))
        code, out, err = run(capsys, "apply", "-f", str(path), "--home", home)
        assert (code, out) == (0, "dataset.data.fluid.io/live configured\n"), err
        time.sleep(TTL)
        assert client.cat("ns/live/b/b.txt") == b"bbb"
        assert sorted(client.ls("ns/live")) == ["ns/live/a", "ns/live/b"]
        path.write_text(dataset("b"))
        assert run(capsys, "apply", "-f", str(path), "--home", home)[0] == 0
        time.sleep(TTL)
        assert sorted(client.ls("ns/live")) == ["ns/live/b"]
        with pytest.raises(FileNotFoundError):
            client.cat("ns/live/a/a.txt")


def test_runtime_tiers_become_per_worker_folders(tmp_path: Path) -> None:
    """``/dev/shm`` is the cluster's own tmpfs folder; a new worker copies worker 0's tiers."""
    from cachecluster.local.runtime_sync import _like_first, local_templates
    from cachecluster.worker.tiers import Medium, TierConfig

    local = LocalCluster(tmp_path / "h", workers=1)  # not started
    (mem,) = local_templates(local, [TierConfig(Medium.MEM, "/dev/shm", 4 << 30)])
    assert mem.path == str(local.layout.shm_root)
    (ssd,) = local_templates(local, [TierConfig(Medium.SSD, "/mnt/ssd", 1 << 30)])
    assert ssd.path == "/mnt/ssd"
    assert [t.path for t in _like_first(local, 3)] == [
        t.path.replace("/w0", "/w3") for t in local.workers[0].tiers
    ]
