"""The next-vector (LVM) recipe (``uncollapse train lvm``) on sequence files: ``config`` (its
options), ``model`` (the backbones and head), ``recipe`` (data, loss, monitors, evaluation)."""

__all__: list[str] = []
