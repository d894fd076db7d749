"""The attributes a user selects (``--attributes A,B``): each named once.

A repeated name would make polars build a frame with two columns of one name (or a projection
with a duplicate output) and fail without saying which option is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

from uncollapse.errors import InputError

__all__ = ["refuse_repeated"]


def refuse_repeated(wanted: Sequence[str] | None, flag: str = "--attributes") -> None:
    """Raise an ``InputError`` naming ``flag`` and the names given more than once."""
    seen: set[str] = set()
    repeated = list(dict.fromkeys(n for n in wanted or () if n in seen or seen.add(n)))
    if repeated:
        raise InputError(flag, f"names {', '.join(map(repr, repeated))} more than once; give "
                               f"each attribute once (such as {flag} "
                               f"{','.join(dict.fromkeys(wanted))})")
