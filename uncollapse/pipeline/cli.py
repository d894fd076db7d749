"""Commands of uncollapse.pipeline: each dataset family's ``build`` commands."""

from uncollapse.pipeline.attributes_cli import build_attributes_command
from uncollapse.pipeline.captions_cli import build_captions_command
from uncollapse.pipeline.scenes_cli import build_scenes_command
from uncollapse.pipeline.sequences_cli import build_chunks_command, build_sequences_command

COMMANDS = {"build": [build_captions_command, build_chunks_command, build_sequences_command,
                       build_attributes_command, build_scenes_command]}
