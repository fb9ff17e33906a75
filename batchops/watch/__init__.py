"""The ``batchops watch`` daemon: a loop around one reconcile pass (DESIGN.md section 1).

``loop`` (when to run a pass), ``triggers`` (why), ``files`` and ``git`` (trigger sources),
``health`` (probes and metrics), ``lock`` (one daemon per folder), ``service`` (the wiring).
"""
