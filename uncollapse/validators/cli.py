"""Commands of uncollapse.validators: each family's ``validate`` and ``diagnose`` commands."""

from uncollapse.validators.attributes_cli import (
    validate_attributes_command,
    validate_flips_command,
    validate_scenes_command,
)
from uncollapse.validators.batches_cli import validate_batches_command
from uncollapse.validators.captions_cli import diagnose_match_ids_command, validate_captions_command
from uncollapse.validators.collapse_cli import diagnose_embeddings_command
from uncollapse.validators.doctor.cli import doctor_command
from uncollapse.validators.sequences_cli import validate_sequences_command

COMMANDS = {"validate": [validate_captions_command, validate_batches_command,
                          validate_sequences_command, validate_attributes_command,
                          validate_flips_command, validate_scenes_command],
            "diagnose": [diagnose_match_ids_command, diagnose_embeddings_command],
            "": [doctor_command]}
