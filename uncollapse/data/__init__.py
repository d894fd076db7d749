"""The data families, one package each (``captions``, ``sequences``, ``attributes``, ``scenes``):
its contract (one definition of its columns or NPZ keys, in ``contract.py``), every reader and
writer of its files, and the torch Datasets over it.

``data`` stands on the ground floor alone: ``errors``, ``atomic`` (writes go to a temporary file
and are renamed into place), ``paths``, ``report`` and the families table (``families``). It
imports nothing else of uncollapse; every other layer imports it (the import-linter contracts
in ``pyproject.toml`` check this). Contracts are documented for users in
``docs/data-contracts.md``, generated from the contract modules.
"""

__all__: list[str] = []
