"""Container runtimes. ``process``: containers are processes in the pod's
network namespace, each with its own mount and UTS namespace."""
