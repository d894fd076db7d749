"""Former home of ``uncollapse.validators.captions.match_ids``, kept while callers move there."""

from uncollapse.validators.captions.match_ids import (
    CAPTION_TABLE_EMPTY,
    FEW_POSITIVES_IN_RANDOM_BATCHES,
    GROUPS_ALL_UNIQUE,
    diagnose_match_id_array,
    diagnose_match_ids,
    random_batch_positives,
)

__all__ = ["CAPTION_TABLE_EMPTY", "FEW_POSITIVES_IN_RANDOM_BATCHES", "GROUPS_ALL_UNIQUE",
           "diagnose_match_id_array", "diagnose_match_ids", "random_batch_positives"]
