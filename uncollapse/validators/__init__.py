"""Checks of datasets, audits of what samplers put in each batch, and collapse diagnostics.

One package per data family, with the same file names in each (``captions``, ``sequences``,
``attributes``, ``scenes``): ``rules.py`` holds the family's rules, each declared once with
its finding code, and ``cli.py`` its ``validate``/``diagnose`` commands. ``batches`` audits
samplers, ``collapse`` judges embeddings and model outputs. ``rules`` is the one way a rule is
written, ``bridge`` turns what pandera reports into findings, ``codes`` lists every finding
code of the project.
"""

__all__: list[str] = []
