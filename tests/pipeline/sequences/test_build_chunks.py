"""`uncollapse build chunks`: every source kind, written in its real format, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from uncollapse.cli import main
from uncollapse.data.sequences.chunks import load_chunks
from uncollapse.errors import InputError, ToolError
from uncollapse.pipeline.sequences.corpus import read_chunks

REPO = Path(__file__).resolve().parents[3]
WIKITEXT = REPO / "data" / "wikitext2" / "wikitext2_test.txt"

CHUNK_SCHEMA = pl.Schema({"doc_id": pl.Int64, "doc_key": pl.String, "position": pl.Int32,
                          "text": pl.String})

# WikiText's layout: BOM, leading spaces, ` = Title = ` articles and ` = = Sub = = ` sections,
# each between blank lines (` `).
WIKITEXT_STYLE = (
    "\ufeff \n"
    " = Alpha = \n"
    " \n"
    " Alpha was born . He lived long .\n"
    " Alpha wrote books .\n"
    " \n"
    " = = Career = = \n"
    " \n"
    " He retired in 1990 .\n"
    " = = = Late years = = = \n"
    " He died .\n"
    " \n"
    " = Beta ( band ) = \n"
    " \n"
    " Beta is a band .\n"
)


def rows(chunks: pl.DataFrame) -> list[tuple]:
    return list(chunks.select("doc_id", "doc_key", "position", "text").iter_rows())


def test_wikitext_titles_start_documents_and_section_headings_do_not(tmp_path):
    path = tmp_path / "wiki.txt"
    path.write_text(WIKITEXT_STYLE, encoding="utf-8")
    chunks, stats = read_chunks(path, unit="line")
    assert chunks.schema == CHUNK_SCHEMA
    assert rows(chunks) == [
        (0, "Alpha", 0, "Alpha was born . He lived long ."),
        (0, "Alpha", 1, "Alpha wrote books ."),
        (0, "Alpha", 2, "He retired in 1990 ."),
        (0, "Alpha", 3, "He died ."),
        (1, "Beta ( band )", 0, "Beta is a band ."),
    ]
    assert stats.documents == 2 and stats.chunks == 5
    assert stats.heading_lines_dropped == 2


def test_paragraph_unit_joins_lines_between_blank_and_heading_lines(tmp_path):
    path = tmp_path / "wiki.txt"
    path.write_text(WIKITEXT_STYLE, encoding="utf-8")
    chunks, _ = read_chunks(path, unit="paragraph")
    assert chunks["text"].to_list() == [
        "Alpha was born . He lived long . Alpha wrote books .",
        "He retired in 1990 .", "He died .", "Beta is a band ."]


def test_sentence_unit_splits_after_terminal_punctuation(tmp_path):
    path = tmp_path / "wiki.txt"
    path.write_text(WIKITEXT_STYLE, encoding="utf-8")
    chunks, _ = read_chunks(path, unit="sentence")
    first = chunks.filter(pl.col("doc_id") == 0)
    assert first["text"].to_list()[:3] == ["Alpha was born .", "He lived long .",
                                          "Alpha wrote books ."]
    assert first["position"].to_list() == list(range(first.height))


def test_text_before_the_first_title_is_counted_not_kept(tmp_path):
    path = tmp_path / "wiki.txt"
    path.write_text("stray preface line\n \n = Alpha = \n \n Body .\n", encoding="utf-8")
    chunks, stats = read_chunks(path, unit="line")
    assert rows(chunks) == [(0, "Alpha", 0, "Body .")]
    assert stats.lines_before_first_document == 1


def test_a_title_shaped_line_inside_a_paragraph_is_text_not_a_title(tmp_path):
    path = tmp_path / "wiki.txt"
    path.write_text(" \n = Filter = \n \n The impedance is\n = 1 / s and a nominal k = \n"
                    " which is low .\n \n = Next = \n \n Other .\n", encoding="utf-8")
    chunks, stats = read_chunks(path, unit="line")
    assert rows(chunks) == [(0, "Filter", 0, "The impedance is"),
                            (0, "Filter", 1, "= 1 / s and a nominal k ="),
                            (0, "Filter", 2, "which is low ."), (1, "Next", 0, "Other .")]
    assert stats.documents == 2 and stats.title_like_lines == 1


def test_a_title_at_the_very_start_and_end_of_a_file_counts_as_standing_alone(tmp_path):
    path = tmp_path / "wiki.txt"
    path.write_text(" = First = \n \n body\n \n = Last = ", encoding="utf-8")
    chunks, stats = read_chunks(path, unit="line")
    assert rows(chunks) == [(0, "First", 0, "body")] and stats.title_like_lines == 0


def test_bundled_wikitext_gives_its_60_articles():
    chunks, stats = read_chunks(WIKITEXT, unit="line")
    # two formula lines of "Constant k filter" (` = 1 <unk> / s and a nominal <unk> k = `) look
    # like titles but sit inside a paragraph
    assert stats.documents == 60 and stats.title_like_lines == 2
    assert chunks.filter(pl.col("doc_key") == "Constant k filter")["text"].str.starts_with(
        "= 1 <unk>").sum() == 2
    assert chunks["doc_key"].unique(maintain_order=True).to_list()[:3] == [
        "Robert <unk>", "Du Fu", "Kiss You ( One Direction song )"]
    assert chunks["text"].str.contains(r"^(= )+.* =$").sum() == 2  # only those formula lines
    assert chunks.group_by("doc_id").agg(ok=(pl.col("position") == pl.int_range(pl.len()))
                                         .all())["ok"].all()


def test_custom_doc_pattern_with_a_capture_group(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text("# One\nfirst\n\nsecond\n# Two\nthird\n", encoding="utf-8")
    chunks, _ = read_chunks(path, unit="paragraph", doc_pattern=r"^# (.+)$")
    assert rows(chunks) == [(0, "One", 0, "first"), (0, "One", 1, "second"),
                            (1, "Two", 0, "third")]


def test_no_matching_title_is_a_clear_error(tmp_path):
    path = tmp_path / "plain.txt"
    path.write_text("just text\nmore text\n", encoding="utf-8")
    with pytest.raises(InputError, match="no line matches the document pattern"):
        read_chunks(path)


def test_folder_of_text_files_gives_one_document_per_file_in_path_order(tmp_path):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text("Bee one.\n\nBee two.\n", encoding="utf-8")
    (folder / "a.txt").write_text("Ay one.\nstill ay one.\n\n\n", encoding="utf-8")
    (folder / "sub" / "c.txt").write_text("\n", encoding="utf-8")
    (folder / "notes.md").write_text("ignored\n", encoding="utf-8")
    chunks, stats = read_chunks(folder)
    assert rows(chunks) == [(0, "a.txt", 0, "Ay one. still ay one."),
                            (1, "b.txt", 0, "Bee one."), (1, "b.txt", 1, "Bee two.")]
    assert stats.files == 3
    assert stats.empty_documents_dropped == 0  # c.txt has no content line, so no chunk at all


def test_folder_with_a_doc_pattern_splits_each_file_at_its_titles(tmp_path):
    (tmp_path / "one.txt").write_text("preface\n = A = \n a1\n = B = \n b1\n b2\n",
                                      encoding="utf-8")
    (tmp_path / "two.txt").write_text(" = C = \n c1\n", encoding="utf-8")
    chunks, stats = read_chunks(tmp_path, unit="line", doc_pattern=r"^\s*= ([^=].*?) =\s*$")
    assert rows(chunks) == [(0, "one.txt:A", 0, "a1"), (1, "one.txt:B", 0, "b1"),
                            (1, "one.txt:B", 1, "b2"), (2, "two.txt:C", 0, "c1")]
    assert stats.lines_before_first_document == 1


def test_a_paragraph_never_runs_from_one_file_into_the_next(tmp_path):
    (tmp_path / "a.txt").write_text("end of a", encoding="utf-8")  # no trailing newline
    (tmp_path / "b.txt").write_text("start of b\n", encoding="utf-8")
    chunks, _ = read_chunks(tmp_path, unit="paragraph")
    assert rows(chunks) == [(0, "a.txt", 0, "end of a"), (1, "b.txt", 0, "start of b")]


def test_jsonl_records_group_by_document_in_order_of_appearance(tmp_path):
    path = tmp_path / "docs.jsonl"
    records = [{"url": "u/b", "body": "B first.\n\nB second."},
               {"url": "u/a", "body": "A first."},
               {"url": "u/b", "body": "   "},
               {"url": "u/b", "body": "B third."}]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    chunks, stats = read_chunks(path, doc_field="url", text_field="body")
    assert rows(chunks) == [(0, "u/b", 0, "B first."), (0, "u/b", 1, "B second."),
                            (0, "u/b", 2, "B third."), (1, "u/a", 0, "A first.")]
    assert stats.empty_chunks_dropped == 1


def test_parquet_records_with_integer_document_field(tmp_path):
    path = tmp_path / "docs.parquet"
    pl.DataFrame({"article": [7, 7, 3], "text": ["x one. Y two.", "", None]}).write_parquet(path)
    chunks, stats = read_chunks(path, unit="sentence", doc_field="article")
    assert rows(chunks) == [(0, "7", 0, "x one."), (0, "7", 1, "Y two.")]
    assert stats.empty_chunks_dropped == 2 and stats.empty_documents_dropped == 1


def test_missing_field_names_the_fields_that_exist(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"id": 1, "body": "x"}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"no field 'doc_id'.*'id', 'body'"):
        read_chunks(path, text_field="body")


def test_null_document_names_the_line(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"doc_id": "a", "text": "x"}\n{"doc_id": null, "text": "y"}\n',
                    encoding="utf-8")
    with pytest.raises(InputError, match="line 2: field 'doc_id' is missing or null"):
        read_chunks(path)


def test_malformed_json_names_the_line(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"doc_id": "a", "text": "x"}\n{"doc_id": "b", "text": \n', encoding="utf-8")
    with pytest.raises(InputError) as error:
        read_chunks(path)
    assert error.value.line == 2


def test_non_utf8_text_names_the_line(tmp_path):
    path = tmp_path / "wiki.txt"
    path.write_bytes(b" = A = \n ok\n bad \xff byte\n")
    with pytest.raises(InputError, match="not UTF-8") as error:
        read_chunks(path)
    assert error.value.line == 3


def test_invalid_unit_is_a_tool_error(tmp_path):
    with pytest.raises(ToolError, match="unit must be one of"):
        read_chunks(WIKITEXT, unit="word")


def test_load_chunks_rejects_unsorted_rows(tmp_path):
    path = tmp_path / "chunks.parquet"
    pl.DataFrame({"doc_id": [0, 1, 0], "doc_key": ["a", "b", "a"], "position": [0, 0, 1],
                  "text": ["x", "y", "z"]}).write_parquet(path)
    with pytest.raises(InputError, match="row 2: rows are not sorted by"):
        load_chunks(path)


def test_cli_builds_through_the_cache_and_writes_the_output(tmp_path):
    source = tmp_path / "wiki.txt"
    source.write_text(WIKITEXT_STYLE, encoding="utf-8")
    out = tmp_path / "chunks.parquet"
    args = ["build", "chunks", str(source), "--unit", "line", "-o", str(out)]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "documents 2, chunks 5" in first.output and "built: chunks" in first.output
    assert pl.read_parquet(out).schema == CHUNK_SCHEMA
    second = CliRunner().invoke(main, args)
    assert "cache hit: chunks" in second.output
    other_unit = CliRunner().invoke(main, args[:3] + ["--unit", "paragraph", "-o", str(out)])
    assert "built: chunks" in other_unit.output
    assert pl.read_parquet(out).height == 4


def test_cli_missing_field_exits_2_with_the_message(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"id": 1, "text": "x"}\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["build", "chunks", str(path)])
    assert result.exit_code == 2
    assert "no field 'doc_id'" in result.output and "doc_field and text_field" in result.output
