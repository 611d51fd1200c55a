"""The node agent (kubelet analog): registers the Node, runs the pods bound
to it with a runtime, and wires the node-side parts (``net``, ``proxy``,
``dns``) to the API through informers."""
