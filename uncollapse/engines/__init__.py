"""Where the work of a build or a check runs: ``local`` (this process) or ``ray`` (Ray Data,
on a local Ray or a cluster: ``uncollapse.engines.ray``, extra ``ray``)."""

__all__ = ["ENGINES"]

ENGINES = ("local", "ray")
"""The names ``--engine`` accepts."""
