"""Batch samplers and collate functions that make the batch guarantees hold, with the datasets
they are used with (those live in ``uncollapse.data`` and are re-exported here).

Needs torch (extra ``torch``).
"""

from uncollapse.extras import require

require("torch", "torch", "the samplers and datasets")

from uncollapse.data.attributes.dataset import AttributeFlipDataset  # noqa: E402
from uncollapse.data.captions.dataset import CaptionDataset  # noqa: E402
from uncollapse.data.scenes.dataset import SceneDataset  # noqa: E402
from uncollapse.data.sequences.dataset import (  # noqa: E402
    SequenceBatch,
    SequenceDataset,
    collate_batch,
)
from uncollapse.data.sequences.hard_negatives import HardNegativeSequenceDataset  # noqa: E402
from uncollapse.samplers.collate import GroupedCollate, positive_mask  # noqa: E402
from uncollapse.samplers.combinations import TargetCombinationSampler  # noqa: E402
from uncollapse.samplers.diverse import DiverseBatchSampler  # noqa: E402
from uncollapse.samplers.grouped import GroupedBatchSampler  # noqa: E402

__all__ = ["AttributeFlipDataset", "CaptionDataset", "DiverseBatchSampler",
           "GroupedBatchSampler", "GroupedCollate", "HardNegativeSequenceDataset",
           "SceneDataset", "SequenceBatch", "SequenceDataset", "TargetCombinationSampler",
           "collate_batch", "positive_mask"]
