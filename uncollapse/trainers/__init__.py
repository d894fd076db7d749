"""Reference trainers on the data uncollapse makes and checks.

Shared by every recipe: ``engine`` (the one training loop), ``config`` (``TrainConfig`` and how
an option declares its bounds), ``recipe`` (the base class, and finding a recipe by name),
``losses``, ``schedule``, ``preflight``, ``run_dir``, ``plots`` (``uncollapse report``),
``serve`` and ``cli``. One package per recipe of ``uncollapse.families.RECIPES``
(``contrastive``, ``lvm``, ``flow``, ``slots``), each with its ``config``, ``model``, ``recipe``
and, where it draws its own figure, ``plots``.
"""

__all__: list[str] = []
