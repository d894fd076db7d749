"""What can be wrong in a caption source, counted and reported with file and line.

A build never crashes on these and never drops a row silently: each is counted, the first
examples carry their file and line, and ``--strict`` makes them fatal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from uncollapse.data.captions.contract import SOURCE_ROW
from uncollapse.report import MAX_EXAMPLES, Code, Finding, Report

__all__ = [
    "EXAMPLES", "IrregularityTally", "Irregularities", "SOURCE_CAPTION_COUNT_UNUSUAL",
    "SOURCE_DUPLICATE_CAPTION_NUMBER",
    "SOURCE_DUPLICATE_IMAGE", "SOURCE_EMPTY_CAPTION", "SOURCE_IMAGE_IN_TWO_SPLITS",
    "SOURCE_IMAGE_NOT_IN_SPLIT", "SOURCE_INVALID_ID", "SOURCE_MALFORMED_LINE",
    "SOURCE_RECORDS_ON_ONE_LINE", "SOURCE_RECORD_KEY_IN_CAPTION", "SOURCE_ROWS_OUTSIDE_SPLITS",
    "SOURCE_SPLIT_IMAGE_WITHOUT_CAPTIONS", "SOURCE_TAB_IN_CAPTION", "SOURCE_UNKNOWN_IMAGE",
    "SOURCE_WHITESPACE_STRIPPED",
]

SOURCE_MALFORMED_LINE = Code(
    "SOURCE_MALFORMED_LINE", "warning",
    "A line of the source does not have the expected layout; it was skipped.",
    "Fix the line in the source (the example gives file and line), or rebuild without "
    "--strict to skip it.")
SOURCE_RECORDS_ON_ONE_LINE = Code(
    "SOURCE_RECORDS_ON_ONE_LINE", "warning",
    "A line of the source holds more than one record (a TAB, then another `name.jpg#n` key and "
    "caption); it was split into its records, each keeping the line number.",
    "Put each record on a line of its own in the source (a lost line break, often from a "
    "bad merge or copy).")
SOURCE_TAB_IN_CAPTION = Code(
    "SOURCE_TAB_IN_CAPTION", "warning",
    "A caption contains a TAB (kept as it is); fields of the source may have run together.",
    "Check the line; replace the TAB with a space if it belongs to the caption.")
SOURCE_RECORD_KEY_IN_CAPTION = Code(
    "SOURCE_RECORD_KEY_IN_CAPTION", "warning",
    "A caption contains a record key such as `name.jpg#n` (kept as it is); two records may "
    "have run together on one line.",
    "Check the line and put each record on a line of its own.")
SOURCE_EMPTY_CAPTION = Code(
    "SOURCE_EMPTY_CAPTION", "warning",
    "A caption is empty after stripping whitespace; it was skipped.",
    "Check the source line; an empty caption cannot be a positive of anything.")
SOURCE_DUPLICATE_CAPTION_NUMBER = Code(
    "SOURCE_DUPLICATE_CAPTION_NUMBER", "warning",
    "The same image has the same caption number more than once in the source (all kept).",
    "Check for a file concatenated twice or a bad merge.")
SOURCE_CAPTION_COUNT_UNUSUAL = Code(
    "SOURCE_CAPTION_COUNT_UNUSUAL", "info",
    "Images with more or fewer captions than most images of the source.",
    "Usually harmless (COCO has 5 to 7 per image); use --group-size ranges when validating.")
SOURCE_IMAGE_NOT_IN_SPLIT = Code(
    "SOURCE_IMAGE_NOT_IN_SPLIT", "warning",
    "An image of the captions is in none of the split lists; its split is null.",
    "Add it to a split list, or filter it out with --splits.")
SOURCE_IMAGE_IN_TWO_SPLITS = Code(
    "SOURCE_IMAGE_IN_TWO_SPLITS", "warning",
    "An image is listed in more than one split list; the first list given wins.",
    "Fix the split lists: an image in two splits leaks between train and evaluation.")
SOURCE_SPLIT_IMAGE_WITHOUT_CAPTIONS = Code(
    "SOURCE_SPLIT_IMAGE_WITHOUT_CAPTIONS", "info",
    "An image named in a split list (or the image list of a JSON file) has no captions.",
    "Usually a truncated captions file or a wrong split list.")
SOURCE_DUPLICATE_IMAGE = Code(
    "SOURCE_DUPLICATE_IMAGE", "warning",
    "An image id appears more than once in the file's image list; the first entry is used "
    "(joining on every entry would repeat each of the image's captions).",
    "Check for image lists concatenated twice or a bad merge of annotation files.")
SOURCE_UNKNOWN_IMAGE = Code(
    "SOURCE_UNKNOWN_IMAGE", "warning",
    "A caption refers to an image id that the file's image list does not contain "
    "(kept, without image path).",
    "Check that the annotations and images of the file belong together.")
SOURCE_INVALID_ID = Code(
    "SOURCE_INVALID_ID", "warning",
    "A record's id is NaN, Infinity or a number with a fraction (JSON ids are integers or "
    "strings); the record was skipped, since every such id would join to the wrong image.",
    "Fix the id in the source (the example gives the list and the record's position).")
SOURCE_WHITESPACE_STRIPPED = Code(
    "SOURCE_WHITESPACE_STRIPPED", "info",
    "Captions whose surrounding whitespace (spaces, newlines) was stripped.",
    "Nothing to do; reported so the change is visible.")
SOURCE_ROWS_OUTSIDE_SPLITS = Code(
    "SOURCE_ROWS_OUTSIDE_SPLITS", "info",
    "Captions left out because their split is not among --splits.",
    "Nothing to do if intended.")

EXAMPLES = MAX_EXAMPLES
"""Examples a finding keeps (``Irregularities.add``): the report's own cap."""


@dataclass
class Irregularities:
    """Irregularities found while reading one source.

    ``lines``: the source is a text file read line by line (a token file, the Flickr30k CSV),
    so each finding is located at the file and line of its first example (``line``, or the
    caption's ``source_row``), which ``--format github`` turns into an annotation on that line.
    """

    source: str
    findings: list[Finding] = field(default_factory=list)
    lines: bool = False

    def add(self, code: Code, rows: pl.DataFrame, message: str, *,
            count: int | None = None) -> None:
        """Record ``rows`` under ``code``; ``message`` names what is counted.

        ``rows`` are the occurrences (with their line or source row), and the count is their
        number, unless ``count`` is given because each row summarises several (a split and its
        number of captions, say): the count always counts what the message names.
        """
        if rows.height == 0:
            return
        count = rows.height if count is None else int(count)
        examples = rows.head(EXAMPLES).to_dicts()
        for example in examples:
            example.setdefault("file", self.source)
        first = examples[0]
        line = first.get("line", first.get(SOURCE_ROW)) if self.lines else None
        self.findings.append(code.finding(f"{count} {message}", count=count,
                                          examples=examples,
                                          file=first["file"] if line is not None else None,
                                          line=line))

    def report(self, stats: dict) -> Report:
        return Report(target=self.source, kind="build captions", findings=self.findings,
                      stats=stats)


@dataclass
class IrregularityTally:
    """Irregularities of a source read in parts (slices of its rows, partitions of its
    images), each part's ``add`` as ``Irregularities.add``; ``add_to`` gives the findings of
    the whole source, as reading it at once gives them: counts added up, the first examples
    by their position in the source (``order``), the findings in the order first added.

    ``summed``: codes whose rows are counts per key (``{code: (key, value)}``), added up by
    key over the parts.
    """

    order: tuple[str, ...] = (SOURCE_ROW, "line")
    summed: dict = field(default_factory=dict)
    parts: dict = field(default_factory=dict)

    def add(self, code: Code, rows: pl.DataFrame, message: str, *,
            count: int | None = None) -> None:
        code_parts = self.parts.setdefault(code.name, [code, message, 0, []])
        code_parts[2] += rows.height if count is None else int(count)
        if rows.height:
            code_parts[3].append(rows if code.name in self.summed else rows.head(EXAMPLES))

    def extend(self, other: IrregularityTally) -> None:
        """Add the parts ``other`` holds (a tally of other rows of the same source)."""
        for name, (code, message, count, pieces) in other.parts.items():
            mine = self.parts.setdefault(name, [code, message, 0, []])
            mine[2] += count
            mine[3].extend(pieces)

    def add_to(self, irregular: Irregularities) -> None:
        for name, (code, message, count, pieces) in self.parts.items():
            if not pieces:
                continue
            rows = pl.concat(pieces)
            if name in self.summed:
                key, value = self.summed[name]
                rows = rows.group_by(key, maintain_order=True).agg(pl.col(value).sum()).sort(
                    key, nulls_last=True)
            else:
                by = next(c for c in self.order if c in rows.columns)
                rows = rows.sort(by, maintain_order=True)
            irregular.add(code, rows, message, count=count)
