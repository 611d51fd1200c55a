"""Control plane: the versioned store, the API server in front of it, the
scheduler and the controllers. Node-side packages reach it only through
``netplane.cluster.client`` (list + watch over HTTP)."""
