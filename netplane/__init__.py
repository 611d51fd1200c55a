"""netplane: a compact container orchestrator whose emphasis is the data plane.

Subpackages, from the foundation up: ``api`` (object model), ``cluster``
(store, API server, scheduler, controllers, client), the node side (``net``,
``proxy``, ``dns``, ``node``), and the wiring (``lab``, ``cli``).
"""

__version__ = "0.1.0"
