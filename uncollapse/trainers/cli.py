"""Commands of uncollapse.trainers."""

COMMANDS: dict = {}
