"""Checks of attribute tables and of attribute-flip augmentations: the pandera model
``AttributeTable`` and its rules (``validate attributes``, in ``rules``), and the replay of an
epoch of flips (``validate flips``: ``flips`` audits any dataset, ``flip_replay`` builds the
dataset and sampler of an attribute table first)."""

from uncollapse.validators.lazy import lazy_names

__all__ = ["AttributeTable", "attribute_table_model", "audit_flip_dataset", "audit_flip_table",
           "audit_flips", "validate_attributes"]

__getattr__, __dir__ = lazy_names(__name__, {
    "AttributeTable": "rules", "attribute_table_model": "rules", "validate_attributes": "rules",
    "audit_flips": "flips", "audit_flip_dataset": "flip_replay",
    "audit_flip_table": "flip_replay"})
