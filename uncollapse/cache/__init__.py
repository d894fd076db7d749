"""Content-addressed, crash-safe artifact store."""

from uncollapse.cache.store import BuildOutput, Cache, Entry, Stage, default_root

__all__ = ["BuildOutput", "Cache", "Entry", "Stage", "default_root"]
