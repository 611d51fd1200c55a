"""The scheduler: binds pending pods to Ready nodes through the API."""
