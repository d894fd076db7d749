"""Attribute tables (DESIGN.md, "Attribute table") from CelebA text files, CSV or Parquet.

CelebA's ``list_attr_celeba.txt`` has the image count on line 1, the attribute names on line 2,
then one line per image: ``000001.jpg -1  1  1 -1 ...`` with any run of whitespace between the
fields, LF or CRLF line ends, values -1/1. ``identity_CelebA.txt`` (``000001.jpg 2880``) and
``list_eval_partition.txt`` (``000001.jpg 0``, 0/1/2 = train/val/test) are joined when given.

Irregular input never passes silently: a count line that disagrees with the rows, every
malformed row (with its line number), duplicates, and images missing from the identity or
partition file are findings of the build report. By default malformed rows are skipped and
counted; ``strict=True`` makes any irregularity fatal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from uncollapse.data.attributes.contract import RESERVED_COLUMNS
from uncollapse.errors import InputError
from uncollapse.pipeline.whitespace_table import (
    BAD,
    WhitespaceText,
    read_fixed_width_rows,
    read_text_bytes,
)
from uncollapse.report import Code, Finding, Report

SPLIT_NAMES = ("train", "val", "test")
ID_COLUMNS = ("image_id", "image", "image_name", "filename", "file_name", "img")
MAX_LISTED_LINES = 20

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


@dataclass
class AttributeBuild:
    """The attribute table and the report of everything irregular met while building it."""

    table: pl.DataFrame
    report: Report

    @property
    def attributes(self) -> list[str]:
        return [c for c in self.table.columns if c not in RESERVED_COLUMNS]


@dataclass
class _Source:
    """A parsed attribute source before validation of its values."""

    image_ids: pl.Series        # [n] String, "" where a row has no id
    values: np.ndarray          # [n, A] int16, BAD where a value did not parse
    locations: np.ndarray       # [n] int64 line (text, CSV) or row (Parquet) numbers
    names: list[str]
    reported: np.ndarray        # [n] bool, rows already reported as malformed
    identity: np.ndarray | None = None   # [n] str or None, from a table's own column
    split: np.ndarray | None = None


def build_attribute_table(source: str | Path, *, identities: str | Path | None = None,
                          partition: str | Path | None = None,
                          attributes: list[str] | None = None,
                          strict: bool = False) -> AttributeBuild:
    """Read an attribute source and return the attribute table of DESIGN.md and a build report.

    Args:
        source: CelebA ``list_attr_celeba.txt`` (any other suffix than .csv/.parquet is read
            as that layout), or a ``.csv``/``.parquet`` table with an ``image_id`` column (or
            ``image``, ``filename``, ...), optional ``identity`` and ``split`` columns, and one
            column per attribute with values -1/1 or 0/1.
        identities: CelebA ``identity_CelebA.txt`` (``<image> <identity>`` per line).
        partition: CelebA ``list_eval_partition.txt`` (``<image> 0|1|2`` per line).
        attributes: keep only these attribute columns, in this order.
        strict: raise ``InputError`` on any irregularity instead of reporting and skipping.

    Returns:
        ``AttributeBuild(table, report)``: ``image_id`` (as in the source), ``identity`` Int64,
        ``split`` String, one Int8 0/1 column per attribute; the report lists irregularities.
    """
    source = Path(source)
    findings: list[Finding] = []
    stats: dict = {"source": str(source)}
    suffix = source.suffix.lower()
    if suffix in (".parquet", ".pq"):
        parsed = _read_table(source, pl.read_parquet, "row", first_location=0)
    elif suffix == ".csv":
        parsed = _read_table(source, _read_csv_strings, "line", first_location=2)
    else:
        parsed = _read_celeba_text(source, findings, stats)
    where = "row" if suffix in (".parquet", ".pq") else "line"

    columns = _select_attributes(source, parsed.names, attributes)
    values, encoding, keep = _binary_values(source, parsed, columns, where, findings)
    stats["source_encoding"] = encoding
    keep &= _first_occurrence(parsed.image_ids, parsed.locations, where, keep, findings,
                              ATTR_DUPLICATE_IMAGE, "attribute source")
    stats["source_rows"] = int(len(parsed.image_ids))
    stats["skipped_rows"] = int((~keep).sum())
    stats["skipped_lines"] = parsed.locations[~keep].tolist()

    names = [parsed.names[c] for c in columns]
    kept = pl.Series(keep)
    table = pl.DataFrame({"image_id": parsed.image_ids.filter(kept).alias("image_id")})
    table = table.with_columns(
        identity=_own_column(source, parsed.identity, keep, "identity",
                             parsed.locations[keep], where),
        split=pl.Series(parsed.split[keep] if parsed.split is not None
                        else np.full(int(keep.sum()), None), dtype=pl.String))
    # column-major, so each attribute column is one contiguous block
    attribute_values = np.asfortranarray(values[keep])
    table = pl.concat([table, pl.from_numpy(attribute_values, schema=names, orient="row")],
                      how="horizontal")
    if table.height == 0:
        raise InputError(source, "no valid attribute rows; why the rows were rejected:"
                         + _summary(findings))

    if identities is not None:
        side = _read_side_file(Path(identities), "identity", findings)
        table = _join_side(table, side, "identity", Path(identities), findings,
                           ATTR_IDENTITY_MISSING)
    if partition is not None:
        side = _read_side_file(Path(partition), "partition", findings)
        side = side.with_columns(
            pl.col("partition").replace_strict(
                dict(enumerate(SPLIT_NAMES)), return_dtype=pl.String).alias("split")
        ).drop("partition")
        table = _join_side(table.drop("split"), side, "split", Path(partition), findings,
                           ATTR_PARTITION_MISSING)
    table = table.select(["image_id", "identity", "split", *names])

    stats.update(rows=table.height, attributes=len(names),
                 identities=int(table["identity"].n_unique() - table["identity"].has_nulls()),
                 splits={str(k): int(v) for k, v in
                         table["split"].value_counts().sort("split").iter_rows()})
    report = Report(str(source), "build attributes", findings, stats)
    if strict and any(f.severity != "info" for f in findings):
        raise InputError(source, "irregular input refused (strict)" + _summary(findings))
    return AttributeBuild(table, report)


# ---- CelebA text ----------------------------------------------------------------------------
def _read_celeba_text(path: Path, findings: list, stats: dict) -> _Source:
    raw = read_text_bytes(path)
    if not raw.strip():
        raise InputError(path, "empty file; expected CelebA's list_attr_celeba.txt layout "
                         "(count line, names line, one row per image)")
    lines = raw.split(b"\n", 2)
    first = lines[0].decode("utf-8").split()
    if len(first) == 1 and first[0].isdigit():
        names = lines[1].decode("utf-8").split() if len(lines) > 1 else []
        if not names:
            raise InputError(path, "expected the attribute names on line 2", line=2)
        header_count, first_row = int(first[0]), 2
        body = lines[2] if len(lines) > 2 else b""
    elif first and all(not _is_number(t) for t in first):
        names, header_count, first_row = first, None, 1
        body = raw.split(b"\n", 1)[1] if len(lines) > 1 else b""
        findings.append(ATTR_NO_COUNT_LINE.finding(
            f"{path} starts with the names line; the row count cannot be checked"))
    else:
        raise InputError(path, f"expected the image count (one integer) on line 1, found "
                         f"{lines[0].decode('utf-8').rstrip()[:60]!r}", line=1)
    if names and names[0].lower() in ID_COLUMNS:
        names = names[1:]
    _check_names(path, names, first_row)
    width = len(names) + 1

    # CelebA's own file is fixed-width and read as a byte matrix; any other layout (or an
    # irregular row) goes through the tokeniser, which reports every row by its line
    regular = read_fixed_width_rows(body, width) if body.strip() else None
    row_findings: list[Finding] = []
    if regular is not None:
        image_ids, values = regular
        last_line = first_row + len(values)
        bad = np.zeros(len(values), dtype=bool)
    else:
        image_ids, values, bad, last_line = _read_irregular_rows(path, raw, first_row, names,
                                                                 row_findings)
    n_rows = len(values)
    if header_count is not None and header_count != n_rows:
        findings.append(ATTR_COUNT_MISMATCH.finding(
            f"line 1 says {header_count} images but lines {first_row + 1}-{last_line} hold "
            f"{n_rows} rows ({n_rows - header_count:+d})",
            count=abs(header_count - n_rows),
            examples=[{"header_count": header_count, "rows": n_rows}]))
    findings += row_findings
    stats["header_count"] = header_count
    line_numbers = np.arange(first_row + 1, first_row + 1 + n_rows, dtype=np.int64)
    # rows already reported for their field count are not reported again for their values
    return _Source(image_ids, values, line_numbers, names, reported=bad)


def _read_irregular_rows(path: Path, raw: bytes, first_row: int, names: list[str],
                         findings: list) -> tuple[pl.Series, np.ndarray, np.ndarray, int]:
    """Rows of a file with irregular lines: ids, values, rows of a wrong field count, last line.

    Rows with the wrong number of fields are reported here with their line numbers.
    """
    text = WhitespaceText(path, raw)
    rows = np.arange(first_row, text.n_lines)
    width = len(names) + 1
    fields = text.fields[rows]
    good = fields == width
    bad = ~good
    if bad.any():
        problems = [f"expected {width} fields (image name + {len(names)} attributes), "
                    f"found {n}" for n in fields[bad][:MAX_LISTED_LINES]]
        _report_rows(findings, ATTR_MALFORMED_ROW, path, "line", rows[bad] + 1, problems,
                     [text.line_text(r) for r in rows[bad][:MAX_LISTED_LINES]])
    first_tokens = text.first_token[rows[good]]
    image_ids = pl.Series("image_id", np.full(len(rows), "", dtype=object), dtype=pl.String)
    if good.any():
        image_ids = image_ids.scatter(np.flatnonzero(good), text.strings(first_tokens))
    values = np.full((len(rows), len(names)), BAD, dtype=np.int16)
    if good.any():
        value_tokens = (first_tokens[:, None] + np.arange(1, width)).ravel()
        # nearly every token is a value: decoding all of them avoids gathering their offsets
        signs = text.signs()[value_tokens]
        # the rare tokens that are not -1/0/1 are parsed fully, to name their value in reports
        odd = np.flatnonzero(signs == BAD)
        parsed, ok = text.ints(value_tokens[odd])
        signs[odd] = np.where(ok & (np.abs(parsed) < -int(BAD)), parsed, BAD)
        values[good] = signs.reshape(-1, len(names))
    return image_ids, values, bad, text.n_lines


def _is_number(token: str) -> bool:
    return token.lstrip("+-").isdigit()


def _check_names(path: Path, names: list[str], line: int) -> None:
    if not names:
        raise InputError(path, "no attribute names", line=line)
    seen: set[str] = set()
    duplicated = [n for n in names if n in seen or seen.add(n)]
    if duplicated:
        raise InputError(path, f"attribute names repeated: {', '.join(duplicated)}; each "
                         "attribute needs a unique name", line=line)
    reserved = [n for n in names if n in RESERVED_COLUMNS]
    if reserved:
        raise InputError(path, f"attribute names {reserved} clash with the table's own columns "
                         f"{RESERVED_COLUMNS}; rename them in the source", line=line)


# ---- CSV / Parquet -------------------------------------------------------------------------
def _read_csv_strings(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False)


def _read_table(path: Path, reader, where: str, *, first_location: int) -> _Source:
    try:
        frame = reader(path)
    except Exception as exc:  # polars raises several error types for unreadable files
        raise InputError(path, f"cannot read as {path.suffix.lstrip('.')}: {exc}") from exc
    id_column = next((c for c in frame.columns if c.lower() in ID_COLUMNS), None)
    if id_column is None:
        raise InputError(path, f"no image id column; expected one of {list(ID_COLUMNS)} "
                         f"besides the attribute columns, found {frame.columns[:8]}")
    names = [c for c in frame.columns if c not in (id_column, "identity", "split")]
    _check_names(path, names, 1 if where == "line" else 0)
    values = frame.select(pl.col(names).cast(pl.Int16, strict=False).fill_null(BAD)) \
        .to_numpy().astype(np.int16).reshape(frame.height, len(names))
    locations = np.arange(first_location, first_location + frame.height, dtype=np.int64)
    parsed = _Source(frame[id_column].cast(pl.String).fill_null(""), values, locations,
                     names, reported=np.zeros(frame.height, dtype=bool))
    if "identity" in frame.columns:
        parsed.identity = frame["identity"].cast(pl.String).to_numpy()
    if "split" in frame.columns:
        parsed.split = frame["split"].cast(pl.String).to_numpy()
    return parsed


def _own_column(path: Path, identity: np.ndarray | None, keep: np.ndarray, name: str,
                locations: np.ndarray, where: str) -> pl.Series:
    if identity is None:
        return pl.Series(name, [None] * int(keep.sum()), dtype=pl.Int64)
    strings = pl.Series(name, identity[keep], dtype=pl.String)
    parsed = strings.cast(pl.Int64, strict=False)
    broken = (parsed.is_null() & strings.is_not_null()).to_numpy()
    if broken.any():
        shown = ", ".join(f"{where} {int(n)}: {value!r}" for n, value in
                          zip(locations[broken][:3], strings.filter(broken).head(3).to_list(),
                              strict=True))
        raise InputError(path, f"column {name!r} must hold integers (person ids); found "
                         f"{int(broken.sum())} that do not ({shown}); fix those rows or drop "
                         f"the column and pass --identities")
    return parsed


# ---- values --------------------------------------------------------------------------------
def _select_attributes(path: Path, names: list[str], wanted: list[str] | None) -> list[int]:
    if not wanted:
        return list(range(len(names)))
    missing = [w for w in wanted if w not in names]
    if missing:
        raise InputError(path, f"unknown attributes {missing}; the source has: "
                         f"{', '.join(names)}")
    return [names.index(w) for w in wanted]


def _binary_values(path: Path, parsed: _Source, columns: list[int], where: str,
                   findings: list) -> tuple[np.ndarray, str, np.ndarray]:
    """0/1 int8 values of the chosen columns, the source encoding, and the rows to keep."""
    names = parsed.names
    values = parsed.values[:, columns]
    reported = parsed.reported
    # the encoding most values use wins: a stray -1 in a 0/1 table (or 0 in a -1/1 file) is
    # one malformed row, not a reason to reject every other row
    counted = values[~reported]
    minus_one = int((counted == -1).sum()) > int((counted == 0).sum())
    encoding = "-1/1" if minus_one else "0/1"
    allowed = (values == 1) | ((values == -1) if minus_one else (values == 0))
    bad_rows = ~allowed.all(axis=1) & ~reported
    missing_id = (parsed.image_ids == "").to_numpy() & ~reported
    bad_rows |= missing_id
    if bad_rows.any():
        rows = np.flatnonzero(bad_rows)[:MAX_LISTED_LINES]
        problems = []
        for r in rows:
            if missing_id[r]:
                problems.append("no image id")
                continue
            j = int(np.flatnonzero(~allowed[r])[0])
            shown = "unparseable" if values[r, j] == BAD else int(values[r, j])
            problems.append(f"attribute {names[columns[j]]!r} is {shown}, expected "
                            f"{encoding.replace('/', ' or ')}")
        _report_rows(findings, ATTR_MALFORMED_ROW, path, where, parsed.locations[bad_rows],
                     problems, None)
    keep = ~(bad_rows | reported)
    return (values == 1).astype(np.int8), encoding, keep


def _first_occurrence(ids: pl.Series, locations: np.ndarray, where: str, keep: np.ndarray,
                      findings: list, code: Code, what: str) -> np.ndarray:
    """True for the first kept row of each id; later duplicates are reported."""
    candidates = np.flatnonzero(keep)
    is_first = np.zeros(len(ids), dtype=bool)
    is_first[candidates] = ids.gather(candidates).is_first_distinct().to_numpy()
    duplicates = keep & ~is_first
    if duplicates.any():
        dup_ids = ids.filter(pl.Series(duplicates)).head(10).to_list()
        findings.append(code.finding(
            f"{int(duplicates.sum())} rows of the {what} repeat an image listed earlier; "
            f"{_list_numbers(locations[duplicates], where)}",
            count=int(duplicates.sum()),
            examples=[{where: int(n), "image_id": str(i)}
                      for n, i in zip(locations[duplicates][:10], dup_ids, strict=True)]))
    return is_first | ~keep


def _report_rows(findings: list, code: Code, path: Path, where: str, numbers: np.ndarray,
                 problems: list[str], texts: list[str] | None) -> None:
    examples = []
    for k, (number, problem) in enumerate(zip(numbers[:10], problems[:10], strict=True)):
        example = {where: int(number), "problem": problem}
        if texts is not None:
            example["text"] = texts[k][:120]
        examples.append(example)
    findings.append(code.finding(
        f"{path}: {len(numbers)} malformed rows skipped, {_list_numbers(numbers, where)}"
        f"; first: {problems[0]}", count=len(numbers), examples=examples))


def _list_numbers(numbers: np.ndarray, where: str) -> str:
    shown = f"{where}{'s' if len(numbers) > 1 else ''} " + ", ".join(
        str(int(n)) for n in numbers[:MAX_LISTED_LINES])
    more = len(numbers) - MAX_LISTED_LINES
    return shown + (f" and {more} more (all in the JSON report's skipped_lines)"
                    if more > 0 else "")


def _summary(findings: list[Finding]) -> str:
    lines = [f"\n  {f.code} ({f.count}): {f.message}" for f in findings if f.severity != "info"]
    return "".join(lines)


# ---- identity and partition files ----------------------------------------------------------
def _read_side_file(path: Path, column: str, findings: list) -> pl.DataFrame:
    """``image_id`` and an Int64 ``column`` from a CelebA ``<image> <integer>`` file."""
    text = WhitespaceText(path)
    rows = np.arange(text.n_lines)
    two = text.fields == 2
    values = np.full(text.n_lines, -1, dtype=np.int64)
    parsed, ok = text.ints(text.first_token[two] + 1)
    values[two] = np.where(ok, parsed, -1)
    high = 2 if column == "partition" else np.iinfo(np.int64).max
    good = two & (values >= 0) & (values <= high)
    if (~good).any():
        expected = "0, 1 or 2" if column == "partition" else "a non-negative integer"
        problems = [f"expected `<image> <{column}>` with {column} {expected}"] * min(
            int((~good).sum()), MAX_LISTED_LINES)
        _report_rows(findings, ATTR_SIDE_FILE_MALFORMED_ROW, path, "line", rows[~good] + 1,
                     problems, [text.line_text(r) for r in rows[~good][:MAX_LISTED_LINES]])
    if not good.any():
        raise InputError(path, f"no valid `<image> <{column}>` rows")
    ids = text.strings(text.first_token[good])
    keep = _first_occurrence(ids, rows[good] + 1, "line", np.ones(len(ids), dtype=bool),
                             findings, ATTR_SIDE_FILE_DUPLICATE, f"{column} file {path}")
    return pl.DataFrame({"image_id": ids.filter(pl.Series(keep)), column: values[good][keep]},
                        schema={"image_id": pl.String, column: pl.Int64})


def _join_side(table: pl.DataFrame, side: pl.DataFrame, column: str, path: Path,
               findings: list, missing_code: Code) -> pl.DataFrame:
    if column in table.columns:
        table = table.drop(column)
    joined = table.join(side, on="image_id", how="left", maintain_order="left")
    missing = joined.filter(pl.col(column).is_null())["image_id"]
    if missing.len():
        findings.append(missing_code.finding(
            f"{missing.len()} of {table.height} images are not in {path}",
            count=missing.len(), examples=missing.head(10).to_list()))
    extra = side.join(table.select("image_id"), on="image_id", how="anti")["image_id"]
    if extra.len():
        findings.append(ATTR_SIDE_FILE_EXTRA.finding(
            f"{extra.len()} images of {path} are not in the attribute table",
            count=extra.len(), examples=extra.head(10).to_list()))
    return joined


ATTRIBUTES_STAGE_NAME = "attributes"
ATTRIBUTES_FILE = "attributes.parquet"


def build_attributes_cached(source: str | Path, *, identities: str | Path | None = None,
                            partition: str | Path | None = None,
                            attributes: list[str] | None = None, strict: bool = False,
                            cache=None, rebuild: bool = False):
    """``build_attribute_table`` through the cache: returns the cache ``Entry``.

    The entry holds ``attributes.parquet``; ``entry.result["report"]`` is the build report as
    a dict. With ``strict`` any irregularity raises ``InputError``, on a cache hit as well.
    """
    from uncollapse.cache.store import BuildOutput, Cache, Stage

    stage = Stage(ATTRIBUTES_STAGE_NAME, 1, ("uncollapse.pipeline.attributes.build",))
    inputs = {"source": source}
    if identities is not None:
        inputs["identities"] = identities
    if partition is not None:
        inputs["partition"] = partition

    def builder(out_dir: Path) -> BuildOutput:
        built = build_attribute_table(source, identities=identities, partition=partition,
                                      attributes=attributes)
        built.table.write_parquet(out_dir / ATTRIBUTES_FILE)
        schema = {name: str(dtype) for name, dtype in built.table.schema.items()}
        return BuildOutput(rows={ATTRIBUTES_FILE: built.table.height}, schema=schema,
                           result={"report": built.report.to_dict()})

    entry = (cache or Cache()).build(
        stage, options={"attributes": list(attributes) if attributes else None},
        inputs=inputs, builder=builder, rebuild=rebuild)
    findings = [f for f in entry.result["report"]["findings"] if f["severity"] != "info"]
    if strict and findings:
        summary = "".join(f"\n  {f['code']} ({f['count']}): {f['message']}" for f in findings)
        raise InputError(source, "irregular input refused (strict)" + summary)
    return entry

