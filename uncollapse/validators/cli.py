"""Commands of uncollapse.validators: each family's ``validate`` and ``diagnose`` commands."""

from uncollapse.validators.batches_cli import validate_batches
from uncollapse.validators.captions_cli import diagnose_match_ids, validate_captions
from uncollapse.validators.collapse.cli import diagnose_embeddings
from uncollapse.validators.sequences_cli import validate_sequences

COMMANDS = {"validate": [validate_captions, validate_batches, validate_sequences],
            "diagnose": [diagnose_match_ids, diagnose_embeddings]}
