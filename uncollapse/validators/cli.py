"""Commands of uncollapse.validators: each family's ``validate`` and ``diagnose`` commands."""

from uncollapse.validators.captions_cli import diagnose_match_ids, validate_captions

COMMANDS = {"validate": [validate_captions], "diagnose": [diagnose_match_ids]}
