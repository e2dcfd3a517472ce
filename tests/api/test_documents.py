"""Parsing and validation of the user's documents: seeds, round trips, one error per mistake."""

from __future__ import annotations

import re

import pytest

from cachecluster.api import (
    CacheRuntimeSpec,
    DataLoadSpec,
    DatasetSpec,
    SecretDoc,
    parse_documents,
)
from cachecluster.common.errors import ConfigError
from tests.api import seeds

SECRETS = {"key_id": "AKIDSEEDVALUE", "key_secret": "SEEDSECRETVALUE"}
PLACES = {"bucket": "mybucket", "bucket_dir": "models", "endpoint": "http://127.0.0.1:9000"}


def test_seed_000_jindo_parses_with_only_endpoint_and_bucket_changed() -> None:
    text = seeds.SHARE_SECRET.format(**SECRETS) + "---\n" + seeds.SHARED_DATASET.format(**PLACES)
    secret, dataset, runtime = parse_documents(text, "shared-dataset.yaml")
    assert isinstance(secret.spec, SecretDoc)
    assert secret.resource == "secret/dataset-secret"
    assert dict(secret.spec.data) == {
        "fs.oss.accessKeyId": "AKIDSEEDVALUE",
        "fs.oss.accessKeySecret": "SEEDSECRETVALUE",
    }
    assert "SEEDSECRETVALUE" not in repr(secret)
    assert dataset.resource == "dataset.data.fluid.io/shared-dataset"
    assert isinstance(dataset.spec, DatasetSpec)
    mount = dataset.spec.mounts[0]
    assert mount.mount_point == "oss://mybucket/models"
    assert mount.options == {"fs.oss.endpoint": "http://127.0.0.1:9000"}
    assert [(e.name, e.secret_name, e.secret_key) for e in mount.encrypt_options] == [
        ("fs.oss.accessKeyId", "dataset-secret", "fs.oss.accessKeyId"),
        ("fs.oss.accessKeySecret", "dataset-secret", "fs.oss.accessKeySecret"),
    ]
    assert dataset.spec.access_modes == ("ReadOnlyMany",)
    assert runtime.kind == "JindoRuntime" and runtime.category == "CacheRuntime"
    assert runtime.resource == "jindoruntime.data.fluid.io/shared-dataset"
    assert isinstance(runtime.spec, CacheRuntimeSpec)
    assert runtime.spec.replicas == 1
    assert runtime.spec.describe_tiers() == "MEM /dev/shm 4Gi"
    (ref,) = parse_documents(seeds.REF_DATASET, "ref-dataset.yaml")
    assert isinstance(ref.spec, DatasetSpec)
    assert ref.spec.reference is not None
    assert (ref.spec.reference.namespace, ref.spec.reference.name) == ("share", "shared-dataset")


def test_seed_003_parses_in_the_default_namespace() -> None:
    text = seeds.SERVERLESS_SECRET.format(**SECRETS) + "---\n"
    text += seeds.SERVERLESS_DATASET.format(**PLACES)
    secret, dataset, runtime = parse_documents(text)
    assert {doc.namespace for doc in (secret, dataset, runtime)} == {"default"}
    assert isinstance(runtime.spec, CacheRuntimeSpec)
    assert runtime.spec.tiers[0].volume_type == "emptyDir"
    assert runtime.spec.describe_tiers() == "MEM /dev/shm 5Gi"


def test_s3_form_and_round_trips() -> None:
    text = seeds.s3_form(seeds.SHARED_DATASET.format(**PLACES))
    dataset, runtime = parse_documents(text)
    assert isinstance(dataset.spec, DatasetSpec) and isinstance(runtime.spec, CacheRuntimeSpec)
    assert dataset.spec.mounts[0].mount_point == "s3://mybucket/models"
    assert DatasetSpec.from_dict(dataset.spec.to_dict()) == dataset.spec
    assert CacheRuntimeSpec.from_dict(runtime.spec.to_dict()) == runtime.spec
    full = {
        "mounts": [
            {"mountPoint": "s3://b/x", "name": "x", "path": "/x", "options": {"a": "1"}},
            {"mountPoint": "local:///data/y"},
        ],
        "sharedOptions": {"fs.s3.pathStyle": "true"},
        "sharedEncryptOptions": [
            {"name": "k", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
        ],
        "accessModes": ["ReadWriteMany"],
        "runtimes": [{"name": "r", "namespace": "ns"}],
        "nodeAffinity": {"required": {}},
    }
    spec = DatasetSpec.from_dict(full)
    assert spec.to_dict() == full
    assert not spec.read_only
    load = {
        "dataset": {"name": "d", "namespace": "n"},
        "target": [{"path": "/a", "replicas": 2}],
        "loadMetadata": True,
        "policy": "Cron",
        "schedule": "*/5 * * * *",
        "ttlSecondsAfterFinished": 30,
    }
    assert DataLoadSpec.from_dict(load).to_dict() == load


def test_runtime_components_round_trip_in_both_fluid_env_forms() -> None:
    spec = {
        "replicas": 2,
        "master": {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}},
        "worker": {
            "resources": {"limits": {"memory": "8Gi", "cpu": 4}},
            "nodeSelector": {"cache": "true"},
            "env": {"TZ": "UTC"},
            "tolerations": [{"key": "cache", "operator": "Exists", "effect": "NoSchedule"}],
            "podMetadata": {"labels": {"a": "b"}, "annotations": {"c": "d"}},
        },
        "fuse": {
            "env": [
                {"name": "A", "value": "1"},
                {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            ]
        },
    }
    parsed = CacheRuntimeSpec.from_dict(spec)
    assert parsed.worker.resources == {"limits": {"memory": "8Gi", "cpu": "4"}}
    assert [(e.name, e.value) for e in parsed.worker.env] == [("TZ", "UTC")]
    assert parsed.fuse.env[1].value_from == {"secretKeyRef": {"name": "s", "key": "k"}}
    assert CacheRuntimeSpec.from_dict(parsed.to_dict()) == parsed
    assert parsed.to_dict()["worker"]["env"] == [{"name": "TZ", "value": "UTC"}]
    assert (parsed.worker.pod_labels, parsed.worker.pod_annotations) == ({"a": "b"}, {"c": "d"})
    # Fluid's kinds keep their other component fields (ignored) and check ours.
    fluid = {"master": {"jvmOptions": ["-Xmx4G"], "resources": {"limits": {"cpu": "x"}}}}
    with pytest.raises(ConfigError, match=r"^rt: spec.master.resources.limits.cpu: 'x' is not"):
        CacheRuntimeSpec.from_dict(fluid, "rt", strict=False)
    with pytest.raises(ConfigError, match=r"^rt: spec.master.jvmOptions: unknown field"):
        CacheRuntimeSpec.from_dict({"master": {"jvmOptions": []}}, "rt")
    del fluid["master"]["resources"]
    assert CacheRuntimeSpec.from_dict(fluid, "rt", strict=False).master.to_dict() == {}
    for bad, field in [
        ({"worker": {"env": [{"name": "A", "value": "1", "valueFrom": {}}]}}, "env[0]: has both"),
        ({"worker": {"env": {"A": "1"}, "resources": {"wants": {}}}}, "resources.wants"),
        ({"fuse": {"tolerations": [{"effect": "Never"}]}}, "tolerations[0].effect"),
        ({"fuse": {"tolerations": [{"tolerationSeconds": "5"}]}}, "tolerationSeconds"),
        ({"master": "big"}, "spec.master: expected a mapping"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(field)) as caught:
            CacheRuntimeSpec.from_dict(bad, "rt")
        assert "\n" not in str(caught.value)


def test_secret_data_is_base64_and_string_data_wins() -> None:
    (doc,) = parse_documents(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n"
        "data: {a: aGVsbG8=, b: eA==}\nstringData: {b: y}\n"
    )
    assert isinstance(doc.spec, SecretDoc)
    assert dict(doc.spec.data) == {"a": "hello", "b": "y"}


DS = "apiVersion: data.fluid.io/v1alpha1\nkind: Dataset\nmetadata: {name: d, namespace: n}\n"
RT = "apiVersion: data.fluid.io/v1alpha1\nkind: JindoRuntime\nmetadata: {name: r, namespace: n}\n"
DL = "apiVersion: data.fluid.io/v1alpha1\nkind: DataLoad\nmetadata: {name: l, namespace: n}\n"
ENC = "valueFrom: {secretKeyRef: {name: s, key: k}}"

# (document, expected error) - each a whole line, naming document, field and reason.
MALFORMED = [
    (
        "kind: Dataset\nmetadata: {name: [unclosed\n",
        "bad.yaml line 3 column 1: not valid YAML:",
    ),
    ("- just\n- a list\n", "bad.yaml doc 1: expected a mapping (a Kubernetes object), got list"),
    ("apiVersion: v1\nmetadata: {name: x}\n", "bad.yaml doc 1: kind: is required"),
    (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n",
        "bad.yaml doc 1: kind: unknown kind 'Pod'",
    ),
    (
        "apiVersion: data.fluid.io/v1\nkind: Dataset\nmetadata: {name: x}\n",
        "bad.yaml doc 1 (Dataset): apiVersion: 'data.fluid.io/v1' is not valid for kind Dataset",
    ),
    (
        "apiVersion: cachecluster.io/v1alpha1\nkind: JindoRuntime\nmetadata: {name: x}\n",
        "bad.yaml doc 1 (JindoRuntime): apiVersion: 'cachecluster.io/v1alpha1' is not valid",
    ),
    (
        "apiVersion: data.fluid.io/v1alpha1\nkind: Dataset\nmetadata: {namespace: n}\n",
        "bad.yaml doc 1 (Dataset): metadata.name: is required",
    ),
    (
        "apiVersion: data.fluid.io/v1alpha1\nkind: Dataset\nmetadata: {name: My_Data}\n",
        "bad.yaml doc 1 (Dataset): metadata.name: 'My_Data' is not a DNS-1123 subdomain",
    ),
    (
        DS + "spec: {mounts: [{mountPoint: 'ftp://host/dir'}]}\n",
        "bad.yaml doc 1 (Dataset n/d): spec.mounts[0].mountPoint: unknown UFS scheme 'ftp'",
    ),
    (
        DS + "spec: {mounts: [{mountPoint: 'dataset://share'}]}\n",
        "bad.yaml doc 1 (Dataset n/d): spec.mounts[0].mountPoint: 'dataset://share' must be "
        "dataset://<namespace>/<name>[/subpath]",
    ),
    (
        DS + "spec: {mounts: [{mountPoint: 'dataset://a/b'}, {mountPoint: 's3://b/x'}]}\n",
        "bad.yaml doc 1 (Dataset n/d): spec.mounts[0].mountPoint: a dataset:// reference must be "
        "the only mount of its dataset",
    ),
    (
        DS + "spec: {mounts: [{mountPoint: 'dataset://a/b/x/../../y'}]}\n",
        "bad.yaml doc 1 (Dataset n/d): spec.mounts[0].mountPoint: 'x/../../y' may not contain '..'",
    ),
    (
        DS + "spec: {mounts: [{mountPoint: 's3://b/x', path: '/a/../b'}]}\n",
        "bad.yaml doc 1 (Dataset n/d): spec.mounts[0].path: '/a/../b' may not contain '..'",
    ),
    (
        DS + "spec: {mounts: [{mountPoint: 's3://b/x', name: m},"
        " {mountPoint: 's3://b/y', name: m}]}\n",
        "bad.yaml doc 1 (Dataset n/d): spec.mounts[1].name: 'm' is already the name of "
        "spec.mounts[0]",
    ),
    (
        DS + "spec: {mounts: [{mountPoint: 's3://b/x', encryptOptions: [{name: k}]}]}\n",
        "bad.yaml doc 1 (Dataset n/d): spec.mounts[0].encryptOptions[0].valueFrom.secretKeyRef: "
        "is required (name and key)",
    ),
    (
        DS + "spec: {mounts: [{mountPoint: 's3://b/x', encryptOptions: "
        "[{name: k, valueFrom: {secretKeyRef: {name: s}}}]}]}\n",
        "bad.yaml doc 1 (Dataset n/d): spec.mounts[0].encryptOptions[0]"
        ".valueFrom.secretKeyRef.key: is required",
    ),
    (
        DS + "spec: {mounts: [{mountPoint: 's3://b/x'}], accessModes: [ReadSometimes]}\n",
        "bad.yaml doc 1 (Dataset n/d): spec.accessModes[0]: unknown access mode 'ReadSometimes'",
    ),
    (
        DS + "spec: {mounts: []}\n",
        "bad.yaml doc 1 (Dataset n/d): spec.mounts: must be a non-empty list",
    ),
    (
        DS + "spec: {mounts: [{mountPoint: 's3://b/x', optoins: {}}]}\n",
        "bad.yaml doc 1 (Dataset n/d): spec.mounts[0].optoins: unknown field",
    ),
    (
        RT + "spec: {tieredstore: {levels: [{mediumtype: MEM, path: /dev/shm, quota: 5Gix}]}}\n",
        "bad.yaml doc 1 (JindoRuntime n/r): spec.tieredstore.levels[0].quota: '5Gix' is not a size",
    ),
    (
        RT + "spec: {tieredstore: {levels: [{mediumtype: MEM, path: /dev/shm, quota: 1Gi, "
        "high: '0.5', low: '0.7'}]}}\n",
        "bad.yaml doc 1 (JindoRuntime n/r): spec.tieredstore.levels[0].high: 0.5 is below",
    ),
    (
        RT + "spec: {tieredstore: {levels: [{mediumtype: MEM, path: /dev/shm, quota: 1Gi, "
        "high: '1.5'}]}}\n",
        "bad.yaml doc 1 (JindoRuntime n/r): spec.tieredstore.levels[0].high: '1.5' is outside 0..1",
    ),
    (
        RT + "spec: {replicas: -1}\n",
        "bad.yaml doc 1 (JindoRuntime n/r): spec.replicas: -1 is not an integer >= 1",
    ),
    (
        RT + "spec: {replicas: two}\n",
        "bad.yaml doc 1 (JindoRuntime n/r): spec.replicas: 'two' is not an integer >= 1",
    ),
    (
        DL + "spec: {target: [{path: /a}]}\n",
        "bad.yaml doc 1 (DataLoad n/l): spec.dataset.name: is required",
    ),
    (
        DL + "spec: {dataset: {name: d}, policy: Sometimes}\n",
        "bad.yaml doc 1 (DataLoad n/l): spec.policy: 'Sometimes' is not one of Once, Cron",
    ),
    (
        DL + "spec: {dataset: {name: d}, policy: Cron}\n",
        "bad.yaml doc 1 (DataLoad n/l): spec.schedule: is required with policy Cron",
    ),
    (
        DL + "spec: {dataset: {name: d}, policy: Cron, schedule: 'every hour'}\n",
        "bad.yaml doc 1 (DataLoad n/l): spec.schedule: 'every hour' is not a cron schedule",
    ),
    (
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {k: '!!notbase64'}\n",
        "bad.yaml doc 1 (Secret default/s): data.k: is not base64",
    ),
    (
        DS
        + "spec: {mounts: [{mountPoint: 's3://b/x'}]}\n---\n"
        + DS
        + "spec: {mounts: [{mountPoint: 's3://b/y'}]}\n",
        "bad.yaml doc 2 (Dataset n/d): metadata.name: n/d is also defined by doc 1",
    ),
]


@pytest.mark.parametrize(("text", "expected"), MALFORMED, ids=[e for _, e in MALFORMED])
def test_malformed_document_gives_one_precise_line(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_documents(text, "bad.yaml")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(expected), message


def test_one_bad_document_fails_the_whole_file() -> None:
    good = DS + "spec: {mounts: [{mountPoint: 's3://b/x'}]}\n"
    bad = RT + "spec: {replicas: 0}\n"
    with pytest.raises(ConfigError, match="doc 2"):
        parse_documents(good + "---\n" + bad, "bad.yaml")


def test_missing_api_version_is_required() -> None:
    with pytest.raises(ConfigError) as info:
        parse_documents("kind: Dataset\nmetadata: {name: d}\n", "f.yaml")
    assert str(info.value) == (
        "f.yaml doc 1 (Dataset): apiVersion: is required for kind Dataset "
        "(expected cachecluster.io/v1alpha1 or data.fluid.io/v1alpha1)"
    )
