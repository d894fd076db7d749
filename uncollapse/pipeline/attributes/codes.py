"""What can be irregular in an attribute source: the finding codes of ``build attributes``.

Listed in docs/finding-codes.md (through ``uncollapse.pipeline.attributes.build``).
"""

from __future__ import annotations

from uncollapse.report import Code

__all__ = [
    "ATTR_COUNT_MISMATCH", "ATTR_DUPLICATE_IMAGE", "ATTR_IDENTITY_MISSING",
    "ATTR_MALFORMED_ROW", "ATTR_NO_COUNT_LINE", "ATTR_PARTITION_MISSING",
    "ATTR_SIDE_FILE_DUPLICATE", "ATTR_SIDE_FILE_EXTRA", "ATTR_SIDE_FILE_MALFORMED_ROW",
]

ATTR_COUNT_MISMATCH = Code(
    "ATTR_COUNT_MISMATCH", "warning",
    "The image count on line 1 of a CelebA attribute file disagrees with the rows that follow "
    "(typically a truncated download).",
    "Download the file again, or accept the rows that are there (the table holds only them).")
ATTR_NO_COUNT_LINE = Code(
    "ATTR_NO_COUNT_LINE", "info",
    "The attribute file starts with the names line; it has no image-count line to check the "
    "row count against.",
    "Nothing to do unless rows may be missing; CelebA's original file has the count on line 1.")
ATTR_MALFORMED_ROW = Code(
    "ATTR_MALFORMED_ROW", "warning",
    "A row of the attribute source has the wrong number of fields or a value that is not "
    "-1/1 (or 0/1); it was skipped.",
    "Repair the listed lines; --strict makes any irregularity fatal.")
ATTR_DUPLICATE_IMAGE = Code(
    "ATTR_DUPLICATE_IMAGE", "warning",
    "The same image is listed more than once in the attribute source; the first row was kept.",
    "Remove the duplicate rows from the source.")
ATTR_SIDE_FILE_MALFORMED_ROW = Code(
    "ATTR_SIDE_FILE_MALFORMED_ROW", "warning",
    "A row of the identity or partition file is malformed (not `<image> <integer>`, or a "
    "partition other than 0/1/2); it was skipped.",
    "Repair the listed lines of the identity or partition file.")
ATTR_SIDE_FILE_DUPLICATE = Code(
    "ATTR_SIDE_FILE_DUPLICATE", "warning",
    "An image is listed more than once in the identity or partition file; the first row was kept.",
    "Remove the duplicate rows.")
ATTR_IDENTITY_MISSING = Code(
    "ATTR_IDENTITY_MISSING", "warning",
    "Images of the attribute table are missing from the identity file; their identity is null.",
    "Use the identity file that belongs to the same download as the attribute file.")
ATTR_PARTITION_MISSING = Code(
    "ATTR_PARTITION_MISSING", "warning",
    "Images of the attribute table are missing from the partition file; their split is null.",
    "Use the partition file that belongs to the same download as the attribute file.")
ATTR_SIDE_FILE_EXTRA = Code(
    "ATTR_SIDE_FILE_EXTRA", "info",
    "The identity or partition file lists images that the attribute table does not have.",
    "Expected after a truncated attribute file or a --attributes subset of rows; otherwise "
    "check that the files belong together.")
