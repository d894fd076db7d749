"""Checks of caption tables: the pandera model ``CaptionTable`` and its rules
(``validate captions``, in ``rules``), and what random batches of a table hold
(``diagnose match-ids``, in ``match_ids``).

The names below are imported from their modules on first use: ``match_ids`` runs where pandera
and polars are not installed (the trainers' pre-flight on a GPU host).
"""

from uncollapse.validators.lazy import lazy_names

__all__ = ["CaptionLimits", "CaptionMeasurements", "CaptionPartial", "CaptionTable",
           "CaptionTableRules", "caption_table_model", "check_captions_partition",
           "diagnose_match_id_array", "diagnose_match_ids", "merge_caption_measurements",
           "normalised_caption", "random_batch_positives", "validate_caption_frame",
           "validate_captions"]

__getattr__, __dir__ = lazy_names(__name__, {
    "CaptionLimits": "measure", "CaptionMeasurements": "measure", "normalised_caption": "measure",
    "CaptionPartial": "measure", "check_captions_partition": "measure",
    "merge_caption_measurements": "measure", "validate_caption_measurements": "rules",
    "CaptionTable": "rules", "CaptionTableRules": "rules", "caption_table_model": "rules",
    "validate_caption_frame": "rules", "validate_captions": "rules",
    "diagnose_match_id_array": "match_ids", "diagnose_match_ids": "match_ids",
    "random_batch_positives": "match_ids"})
