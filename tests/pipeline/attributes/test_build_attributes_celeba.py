"""Reading attribute sources in CelebA's real layout, CSV and Parquet, and `build attributes`."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from uncollapse.cli import main
from uncollapse.errors import InputError
from uncollapse.pipeline.attributes import read_attributes

NAMES = ["5_o_Clock_Shadow", "Arched_Eyebrows", "Smiling", "Male"]


def celeba_text(values: np.ndarray, *, count: int | None = None, eol: str = "\n",
                names_tail: str = " ", sep: str = " ", first: int = 1) -> str:
    """An attribute file in CelebA's layout: count line, names line, `000001.jpg -1  1 ...`."""
    rows = [f"{i:06d}.jpg{sep}" + sep.join(f"{v:2d}" for v in row)
            for i, row in enumerate(values, start=first)]
    count = len(values) if count is None else count
    return eol.join([str(count), " ".join(NAMES) + names_tail, *rows]) + eol


def write(path, text: str):
    path.write_bytes(text.encode())
    return path


@pytest.fixture
def values():
    return np.random.default_rng(7).choice([-1, 1], size=(30, len(NAMES)))


def test_lf_file_with_trailing_space_on_names_line_reads_every_row(tmp_path, values):
    source = write(tmp_path / "list_attr_celeba.txt", celeba_text(values))
    built = read_attributes(source)
    table = built.table
    assert table.columns == ["image_id", "identity", "split", *NAMES]
    assert table.schema["image_id"] == pl.String
    assert table.schema["identity"] == pl.Int64 and table.schema["split"] == pl.String
    assert all(table.schema[n] == pl.Int8 for n in NAMES)
    assert table["image_id"].to_list()[:2] == ["000001.jpg", "000002.jpg"]
    np.testing.assert_array_equal(table.select(NAMES).to_numpy(), (values + 1) // 2)
    assert built.report.findings == []
    assert built.report.stats["source_encoding"] == "-1/1"


def test_crlf_and_runs_of_whitespace_read_the_same_as_lf(tmp_path, values):
    lf = read_attributes(write(tmp_path / "a.txt", celeba_text(values))).table
    crlf = read_attributes(write(tmp_path / "b.txt", celeba_text(
        values, eol="\r\n", sep="  \t "))).table
    assert crlf.equals(lf)


def test_count_line_that_disagrees_with_rows_is_reported(tmp_path, values):
    source = write(tmp_path / "a.txt", celeba_text(values, count=202599))
    built = read_attributes(source)
    (finding,) = [f for f in built.report.findings if f.code == "ATTR_COUNT_MISMATCH"]
    # one irregularity (the count line), however many rows it is off by
    assert finding.count == 1
    assert "202599" in finding.message and "30 rows" in finding.message
    assert f"({30 - 202599:+d})" in finding.message
    assert built.table.height == 30


def test_malformed_rows_are_reported_with_line_numbers_and_skipped(tmp_path, values):
    lines = celeba_text(values).split("\n")
    lines[4] = "000003.jpg 1 -1"                       # too few fields, file line 5
    lines[9] = lines[9][:-2] + " 2"                    # value 2, file line 10
    lines[12] = lines[12][:-2] + " x"                  # not a number, file line 13
    source = write(tmp_path / "a.txt", "\n".join(lines))
    built = read_attributes(source)
    malformed = [f for f in built.report.findings if f.code == "ATTR_MALFORMED_ROW"]
    reported_lines = sorted(e["line"] for f in malformed for e in f.examples)
    assert reported_lines == [5, 10, 13]
    assert sum(f.count for f in malformed) == 3
    assert built.report.stats["skipped_lines"] == [5, 10, 13]
    assert built.table.height == 27
    assert "000003.jpg" not in built.table["image_id"].to_list()
    assert any("is 2, expected -1 or 1" in e["problem"] for f in malformed for e in f.examples)


def test_strict_input_makes_irregularities_fatal_naming_lines(tmp_path, values):
    lines = celeba_text(values).split("\n")
    lines[6] = "000005.jpg 1"
    source = write(tmp_path / "a.txt", "\n".join(lines))
    with pytest.raises(InputError, match=r"ATTR_MALFORMED_ROW.*line 7"):
        read_attributes(source, strict=True)


def test_blank_line_inside_the_rows_is_malformed_but_trailing_blank_lines_are_not(
        tmp_path, values):
    text = celeba_text(values[:3]) + "\n\n"
    assert read_attributes(write(tmp_path / "a.txt", text)).report.findings == []
    lines = celeba_text(values[:3]).split("\n")
    lines.insert(3, "   ")
    built = read_attributes(write(tmp_path / "b.txt", "\n".join(lines)))
    assert [e["line"] for f in built.report.findings if f.code == "ATTR_MALFORMED_ROW"
            for e in f.examples] == [4]


def test_duplicate_images_keep_the_first_row(tmp_path, values):
    lines = celeba_text(values[:4]).split("\n")
    lines.insert(6, "000001.jpg " + " ".join(["1"] * 4))
    built = read_attributes(write(tmp_path / "a.txt", "\n".join(lines)))
    (dup,) = [f for f in built.report.findings if f.code == "ATTR_DUPLICATE_IMAGE"]
    assert dup.examples == [{"line": 7, "image_id": "000001.jpg"}]
    assert built.table.height == 4
    assert built.table.row(0, named=True)["Male"] == (values[0, 3] + 1) // 2


def test_identity_and_partition_files_are_joined_and_missing_images_reported(tmp_path, values):
    source = write(tmp_path / "a.txt", celeba_text(values[:6]))
    identities = write(tmp_path / "identity_CelebA.txt",
                       "".join(f"{i:06d}.jpg {100 + i}\r\n" for i in range(1, 6)))
    partition = write(tmp_path / "list_eval_partition.txt",
                      "000001.jpg 0\n000002.jpg 1\n000003.jpg 2\n000004.jpg 7\n"
                      "000005.jpg 0\n000006.jpg 0\n000099.jpg 2\n")
    built = read_attributes(source, identities=identities, partition=partition)
    table = built.table
    assert table["identity"].to_list() == [101, 102, 103, 104, 105, None]
    assert table["split"].to_list() == ["train", "val", "test", None, "train", "train"]
    codes = {f.code: f for f in built.report.findings}
    assert codes["ATTR_IDENTITY_MISSING"].examples == ["000006.jpg"]
    assert codes["ATTR_PARTITION_MISSING"].examples == ["000004.jpg"]
    assert codes["ATTR_SIDE_FILE_MALFORMED_ROW"].examples[0]["line"] == 4
    assert codes["ATTR_SIDE_FILE_EXTRA"].examples == ["000099.jpg"]


def test_file_without_count_line_is_read_and_noted(tmp_path, values):
    text = celeba_text(values[:3]).split("\n", 1)[1]
    built = read_attributes(write(tmp_path / "a.txt", text))
    assert built.table.height == 3
    assert built.report.codes() == ["ATTR_NO_COUNT_LINE"]


def test_unknown_attribute_selection_names_the_available_ones(tmp_path, values):
    source = write(tmp_path / "a.txt", celeba_text(values))
    with pytest.raises(InputError, match="unknown attributes.*Smiling"):
        read_attributes(source, attributes=["Smiling", "Bald"])
    picked = read_attributes(source, attributes=["Male", "Smiling"]).table
    assert picked.columns == ["image_id", "identity", "split", "Male", "Smiling"]


def test_not_utf8_or_bad_first_line_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not UTF-8"):
        read_attributes(_raw(tmp_path / "b.txt", b"2\nA B\n\xff\xfe 1 1\n"))
    with pytest.raises(InputError, match="line 1"):
        read_attributes(write(tmp_path / "c.txt", "12 13\nA B\nx.jpg 1 1\n"))


def _raw(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("encoding", ["-1/1", "0/1"])
def test_csv_and_parquet_tables_with_either_encoding(tmp_path, values, encoding):
    shown = values if encoding == "-1/1" else (values + 1) // 2
    frame = pl.DataFrame({"image_id": [f"{i}.jpg" for i in range(len(values))],
                          "identity": list(range(len(values))),
                          **{n: shown[:, j] for j, n in enumerate(NAMES)}})
    frame.write_csv(tmp_path / "a.csv")
    frame.write_parquet(tmp_path / "a.parquet")
    for name in ("a.csv", "a.parquet"):
        built = read_attributes(tmp_path / name)
        np.testing.assert_array_equal(built.table.select(NAMES).to_numpy(), (values + 1) // 2)
        assert built.table["identity"].to_list() == list(range(len(values)))
        assert built.report.stats["source_encoding"] == encoding


def test_csv_row_with_a_bad_value_is_reported_with_its_line(tmp_path):
    (tmp_path / "a.csv").write_text("image_id,Smiling,Male\na.jpg,1,0\nb.jpg,5,1\nc.jpg,0,1\n")
    built = read_attributes(tmp_path / "a.csv")
    (finding,) = built.report.findings
    assert finding.code == "ATTR_MALFORMED_ROW" and finding.examples[0]["line"] == 3
    assert built.table["image_id"].to_list() == ["a.jpg", "c.jpg"]


def test_build_command_writes_table_reports_and_hits_the_cache(tmp_path, values):
    lines = celeba_text(values, count=31, eol="\r\n").split("\r\n")
    lines[3] = "000002.jpg 1 1"
    source = write(tmp_path / "list_attr_celeba.txt", "\r\n".join(lines))
    cache = tmp_path / "cache"
    args = ["build", "attributes", str(source), "--attributes", "Smiling,Male",
            "-o", str(tmp_path / "attrs.parquet"), "--cache-dir", str(cache),
            "--json", str(tmp_path / "report.json")]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "ATTR_COUNT_MISMATCH" in first.output and "ATTR_MALFORMED_ROW" in first.output
    table = pl.read_parquet(tmp_path / "attrs.parquet")
    assert table.columns == ["image_id", "identity", "split", "Smiling", "Male"]
    assert table.height == 29
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["stats"]["skipped_lines"] == [4]
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0 and "cache hit" in second.output
    assert "ATTR_MALFORMED_ROW" in second.output  # the report comes back with the cache hit
    (tmp_path / "attrs.parquet").unlink()
    strict = CliRunner().invoke(main, [*args, "--strict"])
    assert strict.exit_code == 1
    assert "line 4" in strict.output and "nothing written" in strict.output
    # two kinds of irregularity, one occurrence each: the count line and the malformed row
    assert ("2 kind(s) of irregularity in the input [ATTR_COUNT_MISMATCH (1), "
            "ATTR_MALFORMED_ROW (1)]") in strict.stderr
    assert not (tmp_path / "attrs.parquet").exists()


def test_build_command_missing_rows_only_gives_exit_2(tmp_path):
    source = write(tmp_path / "a.txt", "2\nA B\nx.jpg 1\ny.jpg 3 3\n")
    result = CliRunner().invoke(main, ["build", "attributes", str(source),
                                       "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 2
    assert "no valid attribute rows" in result.output


def test_full_size_file_parses_in_one_pass(tmp_path):
    rng = np.random.default_rng(1)
    values = rng.choice([-1, 1], size=(20000, len(NAMES)))
    built = read_attributes(write(tmp_path / "a.txt", celeba_text(values)))
    np.testing.assert_array_equal(built.table.select(NAMES).to_numpy(), (values + 1) // 2)
    assert built.table["image_id"][-1] == "020000.jpg"


def test_one_minus_one_row_in_a_zero_one_csv_is_the_only_row_rejected(tmp_path):
    # the encoding is the one most values use: one stray -1 must not turn every 0 into an error
    lines = [f"{i:06d}.jpg,{i % 2},{(i // 2) % 2}" for i in range(1, 41)]
    lines.append("000041.jpg,-1,1")
    source = write(tmp_path / "attrs.csv", "image_id,Smiling,Male\n" + "\n".join(lines) + "\n")
    built = read_attributes(source)
    assert built.table.height == 40
    assert built.report.stats["source_encoding"] == "0/1"
    (finding,) = built.report.findings
    assert finding.code == "ATTR_MALFORMED_ROW" and finding.count == 1
    assert finding.examples[0]["line"] == 42
    assert "'Smiling' is -1, expected 0 or 1" in finding.examples[0]["problem"]


def test_one_zero_in_a_celeba_file_rejects_only_its_row(tmp_path, values):
    text = celeba_text(values).replace("000005.jpg  1", "000005.jpg  0").replace(
        "000005.jpg -1", "000005.jpg  0")
    built = read_attributes(write(tmp_path / "list_attr_celeba.txt", text))
    assert built.table.height == len(values) - 1
    assert built.report.stats["source_encoding"] == "-1/1"
    (finding,) = built.report.findings
    assert finding.count == 1 and finding.examples[0]["line"] == 7


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31), st.booleans())
def test_regular_and_irregular_files_read_their_good_rows_identically(seed, crlf):
    # a well-formed file takes the polars path; one malformed row sends the same rows through
    # the tokeniser: both must give the same table for the rows they share
    rng = np.random.default_rng(seed)
    values = rng.choice([-1, 1], size=(int(rng.integers(1, 40)), len(NAMES)))
    gaps = np.array([" ", "  ", "\t", " \t "])
    rows = [f"{i:06d}.jpg" + "".join(g + f"{v}" for g, v in
                                     zip(rng.choice(gaps, len(NAMES)), row, strict=True))
            + rng.choice(["", " ", "\t"]) for i, row in enumerate(values, start=1)]
    eol = "\r\n" if crlf else "\n"
    head = [str(len(values)), " ".join(NAMES) + " "]
    with tempfile.TemporaryDirectory() as tmp:
        regular = write(Path(tmp) / "regular.txt", eol.join([*head, *rows]) + eol * 2)
        broken = write(Path(tmp) / "broken.txt",
                       eol.join([*head, *rows, "999999.jpg 1 -1"]) + eol)
        fast, slow = read_attributes(regular), read_attributes(broken)
    assert fast.report.findings == []
    assert fast.table.equals(slow.table)
    assert fast.table.select(NAMES).to_numpy().tolist() == ((values + 1) // 2).tolist()
    assert [f.code for f in slow.report.findings] == ["ATTR_COUNT_MISMATCH",
                                                       "ATTR_MALFORMED_ROW"]
    assert slow.report.stats["skipped_lines"] == [len(values) + 3]


def test_out_of_range_value_in_a_well_formed_file_names_its_line(tmp_path, values):
    text = celeba_text(values).replace("000004.jpg -1", "000004.jpg  7").replace(
        "000004.jpg  1", "000004.jpg  7")
    built = read_attributes(write(tmp_path / "list_attr_celeba.txt", text))
    (finding,) = built.report.findings
    assert finding.code == "ATTR_MALFORMED_ROW"
    assert finding.examples == [{"line": 6, "problem": "attribute '5_o_Clock_Shadow' is 7, "
                                                       "expected -1 or 1"}]
    assert built.table.height == len(values) - 1


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
def test_fixed_width_celeba_layout_reads_as_the_tokeniser_does(tmp_path, values, eol):
    from uncollapse.pipeline.whitespace_table import read_fixed_width_rows

    text = celeba_text(values, eol=eol) + eol  # a trailing blank line as well
    body = text.encode().split(b"\n", 2)[2]
    assert read_fixed_width_rows(body, len(NAMES) + 1) is not None  # the byte-matrix path
    # one more blank in one row: same values, no longer fixed-width, so the tokeniser reads it
    retabbed = text.replace("000003.jpg ", "000003.jpg\t ")
    assert read_fixed_width_rows(retabbed.encode().split(b"\n", 2)[2], len(NAMES) + 1) is None
    fast = read_attributes(write(tmp_path / "fixed.txt", text))
    slow = read_attributes(write(tmp_path / "tabbed.txt", retabbed))
    assert fast.table.equals(slow.table)
    assert fast.table.select(NAMES).to_numpy().tolist() == ((values + 1) // 2).tolist()
    assert fast.report.findings == slow.report.findings == []


@pytest.mark.parametrize(("token", "problem"), [
    (" x", "attribute 'Arched_Eyebrows' is unparseable, expected -1 or 1"),
    ("*1", "attribute 'Arched_Eyebrows' is unparseable, expected -1 or 1"),
    (" 3", "attribute 'Arched_Eyebrows' is 3, expected -1 or 1"),
])
def test_bad_value_in_a_fixed_width_file_names_its_line(tmp_path, values, token, problem):
    lines = celeba_text(values).split("\n")
    row = lines[4]  # line 5, image 000003.jpg
    lines[4] = row[:14] + token + row[16:]
    built = read_attributes(write(tmp_path / "list_attr_celeba.txt", "\n".join(lines)))
    (finding,) = built.report.findings
    assert finding.code == "ATTR_MALFORMED_ROW"
    assert finding.examples == [{"line": 5, "problem": problem}]
    assert built.table.height == len(values) - 1
    assert "000003.jpg" not in built.table["image_id"].to_list()


def test_plus_one_in_a_fixed_width_file_is_one(tmp_path, values):
    text = celeba_text(values).replace(" 1", "+1")
    built = read_attributes(write(tmp_path / "list_attr_celeba.txt", text))
    assert built.report.findings == []
    assert built.table.select(NAMES).to_numpy().tolist() == ((values + 1) // 2).tolist()


def test_non_integer_identity_column_names_the_lines(tmp_path):
    source = write(tmp_path / "attrs.csv", "image_id,identity,Smiling\n"
                   "1.jpg,7,1\n2.jpg,seven,0\n3.jpg,8,1\n4.jpg,x9,0\n")
    with pytest.raises(InputError) as caught:
        read_attributes(source)
    message = str(caught.value)
    assert "attrs.csv" in message and "2 that do not" in message
    assert "line 3: 'seven'" in message and "line 5: 'x9'" in message


CELLS = [" 1", "-1", "+1", " 0", "-0", " 7", " x", "x1", "11"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.sampled_from(CELLS), min_size=len(NAMES), max_size=len(NAMES)),
                min_size=1, max_size=25), st.booleans())
def test_fixed_width_path_keeps_and_skips_the_rows_the_tokeniser_does(rows, crlf):
    from uncollapse.pipeline.whitespace_table import read_fixed_width_rows

    eol = "\r\n" if crlf else "\n"
    lines = [f"{i:06d}.jpg " + " ".join(row) for i, row in enumerate(rows, start=1)]
    text = eol.join([str(len(rows)), " ".join(NAMES) + " ", *lines]) + eol
    body = text.encode().split(b"\n", 2)[2]
    assert read_fixed_width_rows(body, len(NAMES) + 1) is not None
    with tempfile.TemporaryDirectory() as tmp:
        fixed = write(Path(tmp) / "fixed.txt", text)
        # one short row appended: the file is no longer fixed-width and goes to the tokeniser
        tokenised = write(Path(tmp) / "tokenised.txt", text + "999999.jpg 1" + eol)
        try:
            fast = read_attributes(fixed)
        except InputError as exc:  # no valid row at all: the tokeniser must say the same
            with pytest.raises(InputError):
                read_attributes(tokenised)
            assert "no valid attribute rows" in str(exc)
            return
        slow = read_attributes(tokenised)
    assert fast.table.equals(slow.table)
    assert fast.report.stats["source_encoding"] == slow.report.stats["source_encoding"]
    assert fast.report.stats["skipped_lines"] == slow.report.stats["skipped_lines"][:-1]
    assert slow.report.stats["skipped_lines"][-1] == len(rows) + 3


def test_cached_build_key_covers_the_text_reader_modules(tmp_path, values):
    # a fix to the byte-level reader must invalidate cached tables, as a fix to the builder does
    from uncollapse.cache.hashing import source_digest
    from uncollapse.cache.store import Cache
    from uncollapse.pipeline.attributes import build_attributes

    source = write(tmp_path / "list_attr_celeba.txt", celeba_text(values))
    entry = build_attributes(source, cache=Cache(tmp_path / "cache")).entry
    assert entry.manifest["key_inputs"]["code"] == source_digest(
        ("uncollapse.pipeline.attributes.build", "uncollapse.pipeline.whitespace_table"))


def test_truncated_celeba_file_under_strict_counts_irregularities_not_missing_rows(tmp_path,
                                                                                  values):
    # a download cut off mid-line: the count line promises 202599 images, 30 rows follow and
    # the last one stops after two values
    text = celeba_text(values, count=202599)
    truncated = text[:text.rstrip("\n").rfind("\n") + 1] + "000031.jpg  1 -1"
    source = write(tmp_path / "list_attr_celeba.txt", truncated)
    args = ["build", "attributes", str(source), "--cache-dir", str(tmp_path / "cache"),
            "-o", str(tmp_path / "attrs.parquet")]

    result = CliRunner().invoke(main, [*args, "--strict", "--format", "json"])

    assert result.exit_code == 1
    report = json.loads(result.stdout)
    counts = {f["code"]: f["count"] for f in report["findings"]}
    assert counts == {"ATTR_COUNT_MISMATCH": 1, "ATTR_MALFORMED_ROW": 1}
    assert report["stats"]["skipped_lines"] == [32]
    assert ("2 kind(s) of irregularity in the input [ATTR_COUNT_MISMATCH (1), "
            "ATTR_MALFORMED_ROW (1)]; nothing written") in result.stderr
    assert "182599" not in result.output
    assert not (tmp_path / "attrs.parquet").exists()
    with pytest.raises(InputError) as refused:
        read_attributes(source, strict=True)
    assert "ATTR_COUNT_MISMATCH (1): line 1 says 202599 images" in str(refused.value)
    assert "ATTR_MALFORMED_ROW (1)" in str(refused.value)


def test_build_attributes_returns_the_build_result_shape(tmp_path, values):
    from uncollapse.cache.store import Cache
    from uncollapse.pipeline.attributes import build_attributes

    source = write(tmp_path / "list_attr_celeba.txt", celeba_text(values, count=31))
    cache = Cache(tmp_path / "cache")
    built = build_attributes(source, cache=cache)
    again = build_attributes(source, cache=cache)

    assert (built.hit, again.hit) == (False, True)
    assert built.path == built.entry.file("attributes.parquet") and built.path.exists()
    assert built.table().height == 30
    assert again.report.codes() == built.report.codes() == ["ATTR_COUNT_MISMATCH"]
    assert again.report.stats["rows"] == 30
    with pytest.raises(InputError, match=r"ATTR_COUNT_MISMATCH \(1\)"):
        build_attributes(source, cache=cache, strict=True)
