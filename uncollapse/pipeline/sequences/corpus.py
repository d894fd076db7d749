"""Corpora to the chunk table: JSONL, Parquet, folders of text files or one text file.

The chunk table (``uncollapse.data.sequences.chunks``, docs/data-contracts.md "Chunk table") has
one row per chunk, sorted by ``doc_id`` then ``position``: the document, numbered in order of
first appearance, its own name (``doc_key``), the chunk's number within it, and its text.

All splitting is done with whole-column polars expressions. Regular expressions given by the
user (``doc_pattern``) use the Rust ``regex`` syntax of polars: no look-around.
"""

from __future__ import annotations

import functools
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import polars as pl

from uncollapse.data.expansion import check_expansion, open_decompressed
from uncollapse.data.polars_read import READ_FAILURES, unreadable_parquet
from uncollapse.data.readable import PARQUET, check_input_file
from uncollapse.data.sequences.chunks import first_non_utf8_row
from uncollapse.data.sequences.contract import (
    CHUNK_DOC_ID,
    CHUNK_DOC_KEY,
    CHUNK_POSITION,
    CHUNK_TEXT,
)
from uncollapse.errors import InputError, ToolError
from uncollapse.pipeline.text_files import read_text_lines

__all__ = [
    "ChunkStats", "MAX_JSON_DEPTH", "SECTION_HEADING", "SENTENCE_END", "SOURCE_KINDS", "UNITS",
    "WIKITEXT_TITLE", "detect_kind", "read_chunks",
]

UNITS = ("paragraph", "line", "sentence")
SOURCE_KINDS = ("auto", "jsonl", "parquet", "text", "folder")

# ` = Title = ` starts an article in WikiText; ` = = Section = = ` does not (second char is `=`).
# A title also stands alone: the line before it and the line after it are blank (` ` or empty).
# Lines of the same shape inside a paragraph (formulas such as ` = 1 <unk> / s = `) are text.
WIKITEXT_TITLE = r"^\s*= ([^=].*?) =\s*$"
# Section headings (` = = Sub = = `, ` = = = Sub = = = `) are dropped: they are not prose and they
# end a paragraph.
SECTION_HEADING = r"^\s*(?:= ){2,}.*?(?: =){2,}\s*$"
# Sentence ends: terminal punctuation, whitespace, then something that can start a sentence.
SENTENCE_END = r"([.!?])\s+([\"'(\[<A-Z0-9])"
_SEP = "\x1f"  # ASCII unit separator: never part of prose, safe to split on literally


@dataclass
class ChunkStats:
    """What reading a source found, counted (nothing is dropped silently).

    ``title_like_lines``: lines that match WikiText's title pattern but do not stand between
    blank lines, so they are kept as text of the current document, not taken for titles.
    """

    source_kind: str
    unit: str
    documents: int = 0
    chunks: int = 0
    empty_chunks_dropped: int = 0
    empty_documents_dropped: int = 0
    lines_before_first_document: int = 0
    heading_lines_dropped: int = 0
    title_like_lines: int = 0
    files: int = 0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {k: v for k, v in vars(self).items() if k != "extra"}
        out.update(self.extra)
        return out


def read_chunks(source: str | Path, *, unit: str = "paragraph", kind: str = "auto",
                doc_field: str = CHUNK_DOC_ID, text_field: str = CHUNK_TEXT,
                doc_pattern: str | None = None, glob: str = "*.txt", engine=None):
    """Read ``source`` into the chunk table; returns ``(polars.DataFrame, ChunkStats)``.

    Args:
        source: a JSONL or Parquet file with one record per document part, a folder of text
            files (one document each, in sorted path order), or one text file whose documents
            start at lines matching ``doc_pattern``.
        unit: ``paragraph`` (blank-line separated blocks; in a text file, heading lines also end
            one), ``line`` (each non-empty line; WikiText stores one paragraph per line) or
            ``sentence`` (paragraphs split after ``.``, ``!`` or ``?`` followed by a capital,
            digit, quote or bracket).
        kind: ``auto`` (by suffix: ``.jsonl``/``.ndjson``, ``.parquet``, a directory, else text).
        doc_field, text_field: the record fields (JSONL, Parquet). Records with the same
            document value form one document, in order of appearance.
        doc_pattern: a regex (Rust syntax) for the heading line that starts a document; its
            first capture group, if any, is the document key. Default for a single text file:
            WikiText's `` = Title = `` (section headings `` = = Sub = = `` do not match)
            standing between blank lines, as in WikiText's files; lines of the same shape
            inside a paragraph (formulas) are kept as text and counted
            (``title_like_lines``). A pattern given here matches lines as they are. For a
            folder the default is one document per file.
        glob: which files of a folder to read: a pattern relative to the folder, without
            ``..``; a match that leads out of the folder through a link is refused.
        engine: where the documents are split into chunks (``uncollapse.engines.ray.RayEngine``:
            partitions of whole documents, by a stable hash of their number, in Ray tasks);
            by default in this process. The table is the same either way.

    Example:
        >>> chunks, stats = read_chunks("data/wikitext2/wikitext2_test.txt", unit="line")
    """
    if unit not in UNITS:
        raise ToolError(f"unit must be one of {', '.join(UNITS)}, not {unit!r}")
    source = Path(source)
    check_input_file(source, CORPUS_KINDS, "give one of them", accept=(PARQUET,))
    kind = detect_kind(source) if kind == "auto" else kind
    if kind not in SOURCE_KINDS:
        raise ToolError(f"source kind must be one of {', '.join(SOURCE_KINDS)}, not {kind!r}")
    stats = ChunkStats(source_kind=kind, unit=unit)
    if kind in ("jsonl", "parquet"):
        parts = _read_records(source, kind, doc_field, text_field, stats)
    elif kind == "folder":
        parts = _read_folder(source, glob, doc_pattern, unit, stats)
    else:
        parts = _read_text_file(source, doc_pattern, unit, stats)
    return _finish(parts, unit, stats, engine)


CORPUS_KINDS = "a corpus (a JSONL or Parquet file, a folder of text files, or a text file)"


def detect_kind(source: Path) -> str:
    if source.is_dir():
        return "folder"
    suffix = source.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    return "text"


# records ------------------------------------------------------------------------------------
def _read_records(source: Path, kind: str, doc_field: str, text_field: str, stats: ChunkStats):
    if kind == "jsonl":
        check_expansion(source)  # polars reads gzip, zlib and zstd JSON lines too
        _check_nesting(source)
    try:
        if kind == "jsonl" and _blank(source):  # no records: an empty result, not a bad file
            table = pl.DataFrame(schema={doc_field: pl.String, text_field: pl.String})
        else:
            table = pl.read_ndjson(source) if kind == "jsonl" else pl.read_parquet(source)
    except READ_FAILURES as exc:  # polars does not say which line broke; find it for the user
        if kind == "jsonl":
            line, reason = _bad_json_line(source)
            if line is not None:
                raise InputError(source, f"not a JSON object ({reason}); each line must be one "
                                         "JSON object, such as "
                                         '{"doc_id": "a", "text": "..."}', line=line) from exc
            raise InputError(source, f"cannot read as JSON lines ({exc}); each line must be "
                                     "one JSON object") from exc
        raise unreadable_parquet(source, exc) from exc
    missing = [f for f in (doc_field, text_field) if f not in table.columns]
    if missing:
        raise InputError(source, f"no field {', '.join(map(repr, missing))}; the records have "
                                 f"{', '.join(map(repr, table.columns))}. Name the fields with "
                                 "doc_field and text_field")
    table = table.select(pl.col(doc_field).alias("doc"),
                         pl.col(text_field).alias(CHUNK_TEXT)).with_row_index("row")
    if table["doc"].dtype == pl.Null or table["doc"].null_count():
        row = int(table.filter(pl.col("doc").is_null())["row"][0])
        where = f"line {row + 1}" if kind == "jsonl" else f"row {row}"
        raise InputError(source, f"{where}: field {doc_field!r} is missing or null; every "
                                 "record needs its document")
    if not isinstance(table[CHUNK_TEXT].dtype, (pl.String, pl.Null)):
        raise InputError(source, f"field {text_field!r} is {table[CHUNK_TEXT].dtype}, expected "
                                 "text")
    doc_keys = _doc_keys(source, table["doc"], doc_field, kind)
    table = table.with_columns(doc_keys.alias(CHUNK_DOC_KEY), pl.col(CHUNK_TEXT).cast(pl.String))
    first_row = pl.col("row").min().over(CHUNK_DOC_KEY)
    table = table.with_columns(doc_seq=first_row.rank("dense").cast(pl.Int64) - 1)
    paragraphs = pl.col(CHUNK_TEXT).fill_null("").str.replace_all(r"\r\n?", "\n")
    splitter = {"line": r"\n", "paragraph": r"\n[ \t]*\n\s*", "sentence": r"\n[ \t]*\n\s*"}[
        "line" if stats.unit == "line" else "paragraph"]
    pieces = (table.sort("doc_seq", "row")
              .select("doc_seq", CHUNK_DOC_KEY,
                      paragraphs.str.replace_all(splitter, _SEP).str.split(_SEP).alias(CHUNK_TEXT))
              .explode(CHUNK_TEXT))
    return pieces


def _doc_keys(source: Path, doc: pl.Series, doc_field: str, kind: str) -> pl.Series:
    """The document ids as text; bytes that are not UTF-8, or a list or struct, are refused
    naming the first such record (polars fails on the cast without saying where)."""
    if doc.dtype.is_nested():
        raise InputError(source, f"field {doc_field!r} is {doc.dtype}; expected text or integer "
                                 "document ids")
    try:
        return doc.cast(pl.String)
    except pl.exceptions.PolarsError as exc:
        row = first_non_utf8_row(doc)
        if row is None:
            raise InputError(source, f"field {doc_field!r} ({doc.dtype}) cannot be read as "
                                     "document ids; write them as text or integers") from exc
        where = f"line {row + 1}" if kind == "jsonl" else f"row {row}"
        raise InputError(source, f"{where}: field {doc_field!r} holds bytes that are not UTF-8 "
                                 "text; write the document ids as UTF-8 text or integers"
                         ) from exc


def _blank(source: Path) -> bool:
    """Whether the file holds only whitespace (read in blocks until the first other byte)."""
    with open_decompressed(source) as fh:
        while block := fh.read(1 << 20):
            if block.strip():
                return False
    return True


MAX_JSON_DEPTH = 64


def _check_nesting(source: Path) -> None:
    """Refuse a line nested deeper than ``MAX_JSON_DEPTH`` before polars parses it: polars'
    JSON reader crashes the process (a segfault, no message) on an object about 1,000 deep.

    Only a line with more than ``MAX_JSON_DEPTH`` opening brackets can be that deep, so the
    exact depth is measured for those lines alone."""
    with open_decompressed(source) as raw, \
            io.TextIOWrapper(raw, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if line.count("{") + line.count("[") > MAX_JSON_DEPTH and \
                    _json_depth(line) > MAX_JSON_DEPTH:
                raise InputError(source, f"JSON nested more than {MAX_JSON_DEPTH} levels "
                                         "deep; a record is a flat object such as "
                                         '{"doc_id": "a", "text": "..."}', line=number)


def _json_depth(line: str) -> int:
    """The deepest bracket nesting of one line, brackets inside strings left out."""
    depth = deepest = 0
    in_string = escaped = False
    for char in line:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "}]":
            depth -= 1
    return deepest


def _not_json(constant: str):
    raise ValueError(f"{constant} is not a JSON value (write null or a number)")


def _bad_json_line(source: Path) -> tuple[int | None, str]:
    """The first line that is not one JSON object, and why (polars does not say which)."""
    with open_decompressed(source) as raw, \
            io.TextIOWrapper(raw, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                try:
                    value = json.loads(line, parse_constant=_not_json)
                except json.JSONDecodeError as exc:
                    return number, f"column {exc.colno}: {exc.msg}"
                except ValueError as exc:
                    return number, str(exc)
                except RecursionError:
                    return number, "nested too deeply"
                if not isinstance(value, dict):
                    kind = {list: "array", str: "string", bool: "boolean", type(None): "null"}
                    return number, f"a JSON {kind.get(type(value), 'number')}"
    return None, ""


# text ---------------------------------------------------------------------------------------
def _check_pattern(pattern: str):
    try:
        pl.Series(["x"]).str.contains(pattern)
    except Exception as exc:
        raise ToolError(f"doc_pattern {pattern!r} is not a valid regular expression (Rust "
                        f"regex syntax, no look-around): {exc}") from exc


def _lines_to_parts(lines, doc_pattern: str | None, unit: str, stats: ChunkStats, *,
                    file_doc_key=None, standalone_titles: bool = False):
    """Lines of one text source -> (doc_seq, CHUNK_DOC_KEY, CHUNK_TEXT) rows of paragraphs or lines.

    ``standalone_titles``: a line matching ``doc_pattern`` starts a document only between
    blank lines (WikiText's layout); other matches are counted in ``title_like_lines``.
    """
    frame = pl.DataFrame({"line": lines}, schema={"line": pl.String})
    if file_doc_key is not None:  # the source's lines are already tagged with their document
        frame = frame.with_columns(file_doc_key)
    line = pl.col("line")
    blank = line.str.strip_chars() == ""
    heading = line.str.contains(SECTION_HEADING)
    if doc_pattern is not None:
        _check_pattern(doc_pattern)
        title = line.str.contains(doc_pattern)
        if standalone_titles:
            # the first line of a source (or file) has a blank before it, the last one after it
            within = ["file"] if file_doc_key is not None else None
            blank_before = _over(blank.shift(1), within).fill_null(True)
            blank_after = _over(blank.shift(-1), within).fill_null(True)
            standalone = title & blank_before & blank_after
            stats.title_like_lines += int(frame.select((title & ~standalone).sum()).item())
            title = standalone
        groups = _pattern_groups(doc_pattern)
        key = (line.str.extract(doc_pattern, 1) if groups else line).str.strip_chars()
        doc_start = title
        if file_doc_key is not None:  # a new file also starts a document
            doc_start = title | (pl.col("file") != pl.col("file").shift(1)).fill_null(True)
        frame = frame.with_columns(
            is_title=title, heading=heading & ~title, blank=blank,
            doc_seq=doc_start.cast(pl.Int64).cum_sum(),
            title_key=pl.when(title).then(key))
        if file_doc_key is not None:
            keyed = pl.col("file_key") + ":" + pl.col("title_key")
            frame = frame.with_columns(title_key=keyed.forward_fill().over("file"))
        else:
            frame = frame.with_columns(title_key=pl.col("title_key").forward_fill())
        before = frame.filter(pl.col("title_key").is_null())
        stats.lines_before_first_document += int(
            before.filter(~pl.col("blank")).height)
        frame = frame.filter(pl.col("title_key").is_not_null())
        frame = frame.with_columns(pl.col("title_key").alias(CHUNK_DOC_KEY))
    else:
        frame = frame.with_columns(pl.col("file_key").alias(CHUNK_DOC_KEY), is_title=pl.lit(False),
                                   heading=heading, blank=blank, doc_seq=pl.col("file"))
    stats.heading_lines_dropped += int(frame["heading"].sum())
    breaks = pl.col("blank") | pl.col("heading") | pl.col("is_title")
    if unit == "line":
        frame = frame.with_columns(part=pl.int_range(pl.len()))
    else:  # a paragraph is a run of content lines; blank, heading and title lines end it, and
        # so does the start of another document (a new file)
        new_doc = (pl.col("doc_seq") != pl.col("doc_seq").shift(1)).fill_null(True)
        frame = frame.with_columns(part=(breaks | new_doc).cast(pl.Int64).cum_sum())
    content = frame.filter(~breaks)
    return (content.group_by("part", maintain_order=True)
            .agg(pl.col("doc_seq").first(), pl.col(CHUNK_DOC_KEY).first(),
                 line.str.strip_chars().str.join(" ").alias(CHUNK_TEXT))
            .select("doc_seq", CHUNK_DOC_KEY, CHUNK_TEXT))


def _over(expression, partition):
    return expression if partition is None else expression.over(partition)


def _pattern_groups(pattern: str) -> int:
    try:
        return re.compile(pattern).groups
    except re.error:  # Rust-only syntax: count unescaped '(' not followed by '?'
        return len(re.findall(r"(?<!\\)\((?!\?)", pattern))


def _read_text_file(source: Path, doc_pattern: str | None, unit: str, stats: ChunkStats):
    stats.files = 1
    lines = read_text_lines(source)
    parts = _lines_to_parts(lines, doc_pattern or WIKITEXT_TITLE, unit, stats,
                            standalone_titles=doc_pattern is None)
    if parts.height == 0 and stats.lines_before_first_document:
        pattern = doc_pattern or WIKITEXT_TITLE
        alone = (f" ({stats.title_like_lines} line(s) match it but do not stand between blank "
                 "lines, as WikiText's titles do)" if stats.title_like_lines else "")
        raise InputError(source, f"no line matches the document pattern {pattern!r}{alone}, so "
                                 "no document starts; give a doc_pattern for this file's "
                                 "heading lines, or put each document in its own file of a "
                                 "folder")
    return parts


def _read_folder(source: Path, glob: str, doc_pattern: str | None, unit: str,
                 stats: ChunkStats):
    files = folder_files(source, glob)
    if not files:
        raise InputError(source, f"no files matching {glob!r} in this folder; give another glob")
    stats.files = len(files)
    all_lines: list[str] = []
    file_index: list[np.ndarray] = []
    keys = [p.relative_to(source).as_posix() for p in files]
    for number, path in enumerate(files):  # one read per file; the lines are then columnar
        lines = read_text_lines(path)
        all_lines.extend(lines)
        file_index.append(np.full(len(lines), number, dtype=np.int64))
    file_ids = np.concatenate(file_index)
    tag = [pl.Series("file", file_ids),
           pl.Series("file_key", np.asarray(keys, dtype=object)[file_ids].tolist(),
                     dtype=pl.String)]
    return _lines_to_parts(all_lines, doc_pattern, unit, stats, file_doc_key=tag)


def check_glob(glob: str) -> str:
    """``glob`` if it can only match files inside the folder, else ToolError: an absolute
    pattern or a ``..`` part would read files that the folder's digest does not cover."""
    parts = PurePosixPath(glob).parts
    if not glob or glob.startswith(("/", "\\")) or PurePosixPath(glob).is_absolute() \
            or ".." in parts or ".." in PureWindowsPath(glob).parts:
        raise ToolError(f"glob {glob!r} reaches outside the folder; give a pattern of files "
                        "inside the folder (relative, no '..'), such as '*.txt' or "
                        "'**/*.txt', or give the other folder as the source")
    return glob


def folder_files(source: Path, glob: str) -> list[Path]:
    """The regular files of folder ``source`` that ``glob`` matches, sorted; a match whose real
    path leads out of the folder (through a link) is refused, as its bytes would not be part of
    the folder's cache key."""
    check_glob(glob)
    root = source.resolve()
    files = sorted(p for p in source.rglob(glob) if p.is_file())
    for path in files:
        real = path.resolve()
        if not real.is_relative_to(root):
            raise InputError(path, f"leads out of the folder (a link, to {real}); a folder "
                                   "source reads only files inside it. Copy the file in, or "
                                   "give the folder it lives in as the source")
    return files


# all sources --------------------------------------------------------------------------------
_ORDER = "_order"


def finish_documents(parts: pl.DataFrame, unit: str) -> tuple[pl.DataFrame, int, int]:
    """The pieces of whole documents (``doc_seq``, ``doc_key``, text) to their chunks: split
    into sentences (``unit="sentence"``), stripped, empty ones dropped. Returns the kept rows in
    order, the empty chunks dropped and the documents left with none: what an engine runs for
    one partition of the documents."""
    if unit == "sentence":
        parts = (parts.with_columns(pl.col(CHUNK_TEXT).fill_null("")
                                    .str.replace_all(SENTENCE_END, "${1}" + _SEP + "${2}")
                                    .str.split(_SEP))
                 .explode(CHUNK_TEXT))
    parts = parts.with_columns(pl.col(CHUNK_TEXT).str.strip_chars())
    empty = parts[CHUNK_TEXT].is_null() | (parts[CHUNK_TEXT] == "")
    kept = parts.filter(~empty)
    return (kept, int(empty.sum()),
            int(parts["doc_seq"].n_unique() - kept["doc_seq"].n_unique()))


def _finish(parts, unit: str, stats: ChunkStats, engine=None):
    if engine is None or parts.height == 0:
        kept, stats.empty_chunks_dropped, stats.empty_documents_dropped = finish_documents(
            parts, unit)
    else:  # partitions of whole documents (a stable hash of doc_seq), put back in order
        done = engine.map_partitions(functools.partial(finish_documents, unit=unit),
                                     parts.with_row_index(_ORDER), key="doc_seq",
                                     what="splitting the documents into chunks")
        kept = pl.concat([rows for rows, _, _ in done]).sort(_ORDER).drop(_ORDER)
        stats.empty_chunks_dropped = sum(empty for _, empty, _ in done)
        stats.empty_documents_dropped = sum(emptied for _, _, emptied in done)
    doc_id = (pl.col("doc_seq").rank("dense").cast(pl.Int64) - 1).alias(CHUNK_DOC_ID)
    position = pl.int_range(pl.len(), dtype=pl.Int32).over(CHUNK_DOC_ID).alias(CHUNK_POSITION)
    chunks = (kept.with_columns(doc_id).with_columns(position)
              .select(CHUNK_DOC_ID, CHUNK_DOC_KEY, CHUNK_POSITION, CHUNK_TEXT))
    stats.documents = int(chunks[CHUNK_DOC_ID].n_unique())
    stats.chunks = chunks.height
    return chunks, stats
