"""The causes the doctor tells apart: one row each, with its finding code, what rules it out
and how to fix it. ``docs/doctor.md`` documents every row; ``rules.py`` judges them.

Each cause is a finding ``Code`` (listed in docs/finding-codes.md beside every other code).
Four of them are the codes the collapse diagnostics and caption rules already report
(MEAN_VECTOR_COLLAPSE, DIMENSIONAL_COLLAPSE, SLOTS_IDENTICAL, SPLIT_LEAKAGE): the doctor
reuses those definitions, so a code means one thing whichever command reports it.
"""

from __future__ import annotations

from dataclasses import dataclass

from uncollapse.report import Code
from uncollapse.validators.doctor import probes

__all__ = [
    "CAUSES", "CAUSE_OF", "Cause", "DIVERGENCE", "HEALTHY", "NEGATIVE_LOSS_TERM",
    "NORMALISED_DECODER_INPUT", "NO_DOC_IDS", "NO_HARD_NEGATIVES", "NO_POSITIVES_IN_BATCH",
    "OVERFITTING", "PARTIAL_AUGMENTATION", "POSITIVES_SPLIT_ACROSS_RANKS",
    "PROTOTYPES_FROM_OUTPUTS", "ROOT_FIRST", "SYMPTOMS"
]

# the shared codes are read through probes (not imported by name), so the code registry lists
# them under the modules that define them

NO_POSITIVES_IN_BATCH = Code(
    "NO_POSITIVES_IN_BATCH", "error",
    "Training batches held no positive pair: every caption is its own group (unique or "
    "row-number match_ids, loop-counter image ids) or the batches were drawn without keeping a "
    "group's rows together, so the contrastive loss had nothing to pull together.",
    "Rebuild the caption table with `uncollapse build captions SOURCE -o captions.parquet` "
    "(image_id from the source's own identifier) and batch with GroupedBatchSampler "
    "(per_group >= 2).")
POSITIVES_SPLIT_ACROSS_RANKS = Code(
    "POSITIVES_SPLIT_ACROSS_RANKS", "error",
    "The global batch held positives but each rank's share did not: a group's rows were dealt "
    "to different ranks (a DistributedSampler over a grouped order) and the loss was computed "
    "per rank without gathering features.",
    "Deal whole batches to ranks (GroupedBatchSampler(rank=..., world_size=...) gives each "
    "rank its own batches of one global plan), or all-gather features across ranks and build "
    "the positive mask from the global batch's match_ids.")
NO_DOC_IDS = Code(
    "NO_DOC_IDS", "error",
    "The sequence file does not say which document each sample comes from (no doc_ids, or "
    "placeholder ids: a row counter or one id for everything), so no same-document hard "
    "negative and no per-document batch cap is possible.",
    "Rebuild the file with `uncollapse build chunks` and `uncollapse build sequences`, which "
    "record every target's document.")
NO_HARD_NEGATIVES = Code(
    "NO_HARD_NEGATIVES", "error",
    "Documents are too short for the exclusion window: most samples have no other target of "
    "their document outside +-exclude_window, so the 'hard' negative falls back to a "
    "neighbour or a random other document.",
    "Chunk whole source documents (not single paragraphs) into one document each, or lower "
    "exclude_window; check with `uncollapse validate sequences`.")
NORMALISED_DECODER_INPUT = Code(
    "NORMALISED_DECODER_INPUT", "error",
    "The outputs (or the vectors the model learned to produce) have unit norm while the "
    "decoder that reads them expects the encoder's raw scale: cosine metrics look fine and "
    "decoded text is wrong.",
    "Train on raw encoder vectors (encode without normalisation) and hand the decoder the "
    "un-normalised head (y_dec, kept on the targets' scale with --moment-weight > 0); or "
    "normalise the decoder's own training inputs too.")
NEGATIVE_LOSS_TERM = Code(
    "NEGATIVE_LOSS_TERM", "error",
    "A loss term that must stay at or above a floor went below it (a diversity or regulariser "
    "term written without its clamp), so the optimiser lowers the total by pushing that term "
    "down instead of fitting the data.",
    "Clamp the term at its floor (for slots: --diversity clamped, the mean of max(0, cos)) and "
    "declare the floor to the loss guard (LossGuard({'term': 0.0})) so a broken run stops at "
    "once.")
PARTIAL_AUGMENTATION = Code(
    "PARTIAL_AUGMENTATION", "error",
    "The attribute-flip augmentation changed only part of the samples; the rest kept target "
    "== source, so the model can learn the identity map and never move an embedding.",
    "Flip on every sample (AttributeFlipDataset with min_flips >= 1), not with a probability; "
    "`uncollapse validate flips` proves share_with_flip = 1.0.")
PROTOTYPES_FROM_OUTPUTS = Code(
    "PROTOTYPES_FROM_OUTPUTS", "error",
    "The class prototypes were computed from the model's own outputs (the flowed batch, with "
    "gradient), so the loss falls by moving outputs and prototypes together while the outputs "
    "carry no target attribute.",
    "Take prototypes from a fixed bank of real embeddings (`--prototypes bank`, the default), "
    "without gradient.")
OVERFITTING = Code(
    "OVERFITTING", "error",
    "Training loss kept falling while validation loss rose from its minimum: the model "
    "memorised the training set.",
    "Keep the checkpoint of the validation minimum, add data or augmentation, raise weight "
    "decay or dropout, or train a smaller model or for fewer steps.")
DIVERGENCE = Code(
    "DIVERGENCE", "error",
    "The loss went non-finite or grew by orders of magnitude (or the weights did): the "
    "optimisation diverged.",
    "Lower the learning rate (try 10x lower), keep gradient clipping on (--grad-clip 1.0), "
    "use bf16 rather than fp16, check the inputs' scale, and resume from the last checkpoint "
    "whose weights are finite.")
HEALTHY = Code(
    "HEALTHY", "info",
    "No cause found: every check the doctor could run on the run's artifacts and data passed.",
    "Nothing to fix; the report's stats list what was checked.")


@dataclass(frozen=True)
class Cause:
    """One cause of the table: its code, a one-line summary, and the check that rules it out.

    ``code.fix`` is the general fix; a finding carries the fix for the run at hand (a
    command with its paths, or the config change) when the evidence names one.
    """

    code: Code
    summary: str
    rule_out: str

    @property
    def name(self) -> str:
        return self.code.name


CAUSES: tuple[Cause, ...] = (
    Cause(NO_POSITIVES_IN_BATCH, "batches held no positive pair",
          "`uncollapse diagnose match-ids CAPTIONS --batch-size B` reports groups of two or "
          "more rows, and the loss is neither exactly 0 nor NaN from the first step"),
    Cause(POSITIVES_SPLIT_ACROSS_RANKS, "positives were split across ranks",
          "every rank logs positives per row above 0, or the same run on one rank behaves the "
          "same"),
    Cause(NO_DOC_IDS, "the sequence file has no document ids",
          "`uncollapse validate sequences FILE` passes with documents of several samples each"),
    Cause(NO_HARD_NEGATIVES, "documents are too short for hard negatives",
          "at least half the samples have a same-document target outside +-exclude_window"),
    Cause(probes.MEAN_VECTOR_COLLAPSE, "outputs converged to the targets' mean vector",
          "cos(output, target) beats the mean-target baseline by 0.02 or more on held-out data"),
    Cause(NORMALISED_DECODER_INPUT, "unit-norm outputs feed a decoder that expects raw scale",
          "output norms match the targets' norms, and the training vectors are not unit-norm"),
    Cause(probes.DIMENSIONAL_COLLAPSE, "the outputs' effective rank fell",
          "the outputs' effective rank stays above 15% of min(rows, dim) (or 25% of the "
          "targets') and does not halve during training"),
    Cause(NEGATIVE_LOSS_TERM, "a loss term went below its floor",
          "every logged loss term stays at or above 0 and the config uses the clamped form"),
    Cause(probes.SLOTS_IDENTICAL, "the slots converged to one",
          "the mean cosine between an image's slots stays below 0.9 at the end of training"),
    Cause(PARTIAL_AUGMENTATION, "flips were applied to a fraction of samples",
          "`uncollapse validate flips` reports share_with_flip = 1.0 (or a logged flip_rate "
          "of 1)"),
    Cause(PROTOTYPES_FROM_OUTPUTS, "prototypes were computed from the model's outputs",
          "the config says prototypes 'bank', and the flow's transfer accuracy is within half "
          "of the steering baseline's"),
    Cause(probes.SPLIT_LEAKAGE, "evaluation data leaked into training",
          "`uncollapse validate captions` (or `validate attributes`) reports no image or "
          "identity in two splits"),
    Cause(OVERFITTING, "validation loss rose while training loss fell",
          "validation loss reaches its minimum within the last 20% of the run"),
    Cause(DIVERGENCE, "the loss diverged",
          "every logged loss is finite, none grows 10x above its first value, and the "
          "checkpoint's weights are finite and below 100"),
)

CAUSE_OF: dict[str, Cause] = {cause.name: cause for cause in CAUSES}

SYMPTOMS = frozenset({"MEAN_VECTOR_COLLAPSE", "DIMENSIONAL_COLLAPSE", "SLOTS_IDENTICAL"})
"""Causes that describe the state of the outputs, which another cause can produce (a diverged
run's outputs collapse too): they rank after a root cause found with ``ROOT_FIRST``
confidence."""
ROOT_FIRST = 0.8
