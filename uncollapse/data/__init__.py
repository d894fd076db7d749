"""The data families, one package each: its contract (one definition of its columns or NPZ
keys), reading and writing its format, and the torch Datasets over it.

This is the ground floor with ``errors`` and ``report``: it imports nothing else of uncollapse.
Contracts are documented for users in ``docs/data-contracts.md``.
"""
