"""Commands of uncollapse.pipeline: each dataset family's ``build`` commands."""

from uncollapse.pipeline.attributes_cli import build_attributes, build_scenes
from uncollapse.pipeline.captions.cli import build_captions
from uncollapse.pipeline.sequences.cli import build_chunks, build_sequences

COMMANDS = {"build": [build_captions, build_chunks, build_sequences,
                     build_attributes, build_scenes]}
