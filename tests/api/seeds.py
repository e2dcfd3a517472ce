"""The seeds' YAML (shared/seeds/000 Jindo variant, 003), only endpoint and bucket changed."""

SHARE_SECRET = """\
apiVersion: v1
kind: Secret
metadata:
  name: dataset-secret
  namespace: share
stringData:
  fs.oss.accessKeyId: {key_id}
  fs.oss.accessKeySecret: {key_secret}
"""

# 000, JindoRuntime: shared-dataset.yaml, verbatim but for the bucket and the endpoint.
SHARED_DATASET = """\
# Dataset: describes the data stored in OSS (the underlying file system, UFS).
apiVersion: data.fluid.io/v1alpha1
kind: Dataset
metadata:
  name: shared-dataset
  namespace: share
spec:
  mounts:
  - mountPoint: oss://{bucket}/{bucket_dir} # Path to the data in your OSS bucket.
    options:
      fs.oss.endpoint: {endpoint} # Endpoint of your OSS bucket.
    name: hadoop
    path: "/"
    encryptOptions:
      - name: fs.oss.accessKeyId
        valueFrom:
          secretKeyRef:
            name: dataset-secret
            key: fs.oss.accessKeyId
      - name: fs.oss.accessKeySecret
        valueFrom:
          secretKeyRef:
            name: dataset-secret
            key: fs.oss.accessKeySecret
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

REF_DATASET = """\
apiVersion: data.fluid.io/v1alpha1
kind: Dataset
metadata:
  name: ref-dataset
  namespace: ref
spec:
  mounts:
    - mountPoint: dataset://share/shared-dataset
"""

# 003: secret.yaml and dataset.yaml (no namespace: "default").
SERVERLESS_SECRET = """\
apiVersion: v1
kind: Secret
metadata:
  name: access-key
stringData:
  fs.oss.accessKeyId: {key_id}
  fs.oss.accessKeySecret: {key_secret}
"""

SERVERLESS_DATASET = """\
apiVersion: data.fluid.io/v1alpha1
kind: Dataset
metadata:
  name: serverless-data
spec:
  mounts:
  - mountPoint: oss://{bucket}/{bucket_dir}
    name: demo
    path: /
    options:
      fs.oss.endpoint: {endpoint}
    encryptOptions:
      - name: fs.oss.accessKeyId
        valueFrom:
          secretKeyRef:
            name: access-key
            key: fs.oss.accessKeyId
      - name: fs.oss.accessKeySecret
        valueFrom:
          secretKeyRef:
            name: access-key
            key: fs.oss.accessKeySecret
---
apiVersion: data.fluid.io/v1alpha1
kind: JindoRuntime
metadata:
  name: serverless-data
spec:
  replicas: 1
  tieredstore:
    levels:
    - mediumtype: MEM
      volumeType: emptyDir
      path: /dev/shm
      quota: 5Gi
      high: "0.95"
      low: "0.7"
"""


def s3_form(text: str) -> str:
    """The same YAML over S3: ``s3://`` mount point, ``fs.s3.*`` options and secret keys."""
    return (
        text.replace("oss://", "s3://")
        .replace("fs.oss.endpoint", "fs.s3.endpoint")
        .replace("fs.oss.accessKeyId", "fs.s3.accessKeyId")
        .replace("fs.oss.accessKeySecret", "fs.s3.accessKeySecret")
    )
