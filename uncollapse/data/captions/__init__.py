"""Caption tables: contract in ``contract``; torch Dataset in ``dataset``."""

__all__: list[str] = []
