"""Commands of uncollapse.pipeline: each dataset family's ``build`` commands."""

from uncollapse.pipeline.captions.cli import build_captions

COMMANDS = {"build": [build_captions]}
