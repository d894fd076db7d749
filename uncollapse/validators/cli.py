"""Commands of uncollapse.validators: each family's ``validate`` and ``diagnose`` commands."""

from uncollapse.validators.attributes_cli import (
    validate_attributes,
    validate_flips,
    validate_scenes,
)
from uncollapse.validators.batches_cli import validate_batches
from uncollapse.validators.captions_cli import diagnose_match_ids, validate_captions
from uncollapse.validators.collapse.cli import diagnose_embeddings
from uncollapse.validators.sequences_cli import validate_sequences

COMMANDS = {"validate": [validate_captions, validate_batches, validate_sequences,
                         validate_attributes, validate_flips, validate_scenes],
            "diagnose": [diagnose_match_ids, diagnose_embeddings]}
