"""The contrastive recipe (``uncollapse train contrastive``) on caption tables: ``config`` (its
options), ``model`` (two MLP towers), ``recipe`` (data, loss, monitors, evaluation)."""

__all__: list[str] = []
