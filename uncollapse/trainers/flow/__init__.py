"""The attribute-flow recipe (``uncollapse train flow``) on attribute tables: ``config`` (its
options), ``model`` (the vector field), ``recipe`` (data, loss, monitors, evaluation), ``plots``
(the trajectory figure of ``uncollapse report``)."""

__all__: list[str] = []
