"""Caption tables: contract in ``contract``, the polars reader in ``table``, the torch Dataset
in ``dataset``."""

__all__: list[str] = []
