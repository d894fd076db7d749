"""Commands of uncollapse.samplers."""

COMMANDS: dict = {}
