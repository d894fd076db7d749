"""Batch samplers, datasets and collate functions that make the batch guarantees hold.

Names are imported on first use, so ``import uncollapse.samplers`` does not load torch.
"""

_EXPORTS = {
    "GroupedBatchSampler": "uncollapse.samplers.grouped",
    "DiverseBatchSampler": "uncollapse.samplers.diverse",
    "GroupedCollate": "uncollapse.samplers.collate",
    "positive_mask": "uncollapse.samplers.collate",
    "SequenceDataset": "uncollapse.samplers.sequence_dataset",
    "SequenceBatch": "uncollapse.samplers.sequence_dataset",
    "collate_batch": "uncollapse.samplers.sequence_dataset",
    "HardNegativeSequenceDataset": "uncollapse.samplers.hard_negatives",
    "AttributeFlipDataset": "uncollapse.samplers.attribute_flip",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'uncollapse.samplers' has no attribute {name!r}")
