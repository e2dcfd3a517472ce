"""The user's API: Dataset, CacheRuntime, DataLoad and Secret documents (Fluid's names).

One place used by the CLI, the master and later the operator. See
:mod:`cachecluster.api.models` for the specs and
:mod:`cachecluster.api.documents` for multi-document YAML.
"""

from cachecluster.api.documents import (
    API_VERSIONS,
    FLUID_GROUP,
    FLUID_RUNTIME_KINDS,
    KINDS,
    OUR_GROUP,
    Document,
    parse_document,
    parse_documents,
)
from cachecluster.api.models import (
    ACCESS_MODES,
    DEFAULT_NAMESPACE,
    CacheRuntimeSpec,
    ComponentSpec,
    DataLoadSpec,
    DatasetRef,
    DatasetSpec,
    EncryptOption,
    EnvVar,
    Mount,
    Reference,
    RuntimeRef,
    SecretDoc,
    Target,
    check_name,
    is_secret_key,
    mask_options,
    parse_reference,
)
from cachecluster.worker.tiers import TierConfig

__all__ = [
    "ACCESS_MODES",
    "API_VERSIONS",
    "DEFAULT_NAMESPACE",
    "FLUID_GROUP",
    "FLUID_RUNTIME_KINDS",
    "KINDS",
    "OUR_GROUP",
    "CacheRuntimeSpec",
    "ComponentSpec",
    "DataLoadSpec",
    "DatasetRef",
    "DatasetSpec",
    "Document",
    "EncryptOption",
    "EnvVar",
    "Mount",
    "Reference",
    "RuntimeRef",
    "SecretDoc",
    "Target",
    "TierConfig",
    "check_name",
    "is_secret_key",
    "mask_options",
    "parse_document",
    "parse_documents",
    "parse_reference",
]
