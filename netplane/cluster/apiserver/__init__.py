"""The API server: Kubernetes REST paths over the store, with validation,
defaulting, allocators (ClusterIP, pod CIDR) and authentication."""
