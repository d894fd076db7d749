"""Sampler audits: replay what a batch sampler yields and check each batch's guarantees.

``rules``: the guarantees as the pandera model ``BatchAssignment``; ``audit``:
``audit_batches``, the replay; ``table``: ``audit_table``, the samplers a table's ids call for
(``uncollapse validate batches``).
"""

from uncollapse.validators.lazy import lazy_names

__all__ = ["ROWS_NOT_PLACED_WARN_SHARE", "BatchAssignment", "audit_batches", "audit_table",
           "batch_assignment_frame", "batch_assignment_model"]

__getattr__, __dir__ = lazy_names(__name__, {
    "BatchAssignment": "rules", "batch_assignment_frame": "rules",
    "batch_assignment_model": "rules", "ROWS_NOT_PLACED_WARN_SHARE": "audit",
    "audit_batches": "audit", "audit_table": "table"})
