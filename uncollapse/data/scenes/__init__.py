"""Scene files for object-centric training: contract in ``contract``; torch Dataset in
``dataset``."""

__all__: list[str] = []
