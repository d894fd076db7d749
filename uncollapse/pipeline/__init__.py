"""Builds: each family's sources (real formats) to its data files, through the cache.

One package per family (``captions``, ``sequences``, ``attributes``, ``scenes``) with its
sources, ``build.py`` and ``cli.py``; ``result`` (``Built``, what every build returns),
``empty`` (an empty result is invalid), ``build_cli`` (what every build command shares),
``text_files`` and ``whitespace_table`` (reading text sources) serve them all.
"""

__all__: list[str] = []
