"""Caption tables: contract in ``contract``; torch Dataset in ``dataset``."""
