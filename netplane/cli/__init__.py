"""The ``netplane`` command: kubectl-like verbs, the lab, and the daemons."""
