"""The mesh, the L7 half of the data plane, configured by the Gateway API.
Routing: ``routes`` (HTTPRoute matches in one precedence-ordered table per
parent), ``filters``, ``durations``, ``resilience`` (timeouts, retries,
balancing, ejection, circuit breaking); ``config`` (GAMMA: routes on
Services) and ``gateway`` (Gateways, listeners, TLS). The data path:
``proxy`` (HTTP/1.1), ``passthrough`` (L4), ``capture`` (the node's nft
redirect), ``tunnel`` (mutual-TLS HTTP/2 CONNECT between nodes),
``identity``, ``enroll`` and ``signer`` (SPIFFE certificates through
CertificateSigningRequests), ``authz``. What it tells: ``metrics``,
``accesslog``, ``tracing``, ``status``. ``controller`` is the process that
writes statuses, makes Gateways' Services and signs node certificates. A
data-plane part like ``proxy`` and ``dns``: it imports ``api`` and the
cluster client only."""
