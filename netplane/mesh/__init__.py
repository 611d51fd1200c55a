"""The L7 half of the data plane: HTTP routing as the Gateway API specifies
it (``routes``: HTTPRoute matches compiled into one precedence-ordered
table per parent; ``filters``: the header, redirect and rewrite filters;
``durations``: the API's duration strings). A data-plane part like
``proxy`` and ``dns``: it imports ``api`` and the cluster client only."""
