"""The Kubernetes operator: Dataset, CacheRuntime and DataLoad objects become a running cache.

Handlers (kopf) are thin shells around plain reconcile functions (spec in, desired
objects out) that the tests call directly; see docs/operator.md.
"""
