"""Former home of ``uncollapse.validators.attributes.flips``, kept while callers move there."""

from uncollapse.validators.attributes.flips import (
    FLIP_BATCH_SINGLE_COMBINATION,
    FLIP_TARGETS_NOT_BINARY,
    FLIPS_NO_SAMPLES,
    FLIPS_NOT_ALWAYS_APPLIED,
    FLIPS_NOT_REPRODUCIBLE,
    FLIPS_OUT_OF_RANGE,
    audit_flips,
    fetch_attributes,
)

__all__ = ["FLIPS_NOT_ALWAYS_APPLIED", "FLIPS_NOT_REPRODUCIBLE", "FLIPS_NO_SAMPLES",
           "FLIPS_OUT_OF_RANGE", "FLIP_BATCH_SINGLE_COMBINATION", "FLIP_TARGETS_NOT_BINARY",
           "audit_flips", "fetch_attributes"]
