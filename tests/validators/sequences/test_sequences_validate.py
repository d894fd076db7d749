"""`uncollapse validate sequences`: every finding code, triggered and healthy, and exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from uncollapse.cli import main
from uncollapse.data.npz import write_npz
from uncollapse.data.sequences.contract import (
    CONCEPT_TEXTS,
    DOC_KEYS,
    TEXTS,
    sequence_windows,
    utf8_texts,
)
from uncollapse.errors import InputError
from uncollapse.validators.sequences import validate_sequences

C, D = 2, 4


def compact_arrays(lengths=(5, 3, 6), seed=0) -> dict:
    rng = np.random.default_rng(seed)
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    return {"vectors": rng.standard_normal((offsets[-1], D)).astype(np.float32),
            "doc_offsets": offsets, "context_length": np.int64(C),
            **utf8_texts(DOC_KEYS, [f"d{i}" for i in range(len(lengths))]),
            **utf8_texts(TEXTS, [f"t{i}" for i in range(offsets[-1])])}


def dense_arrays(lengths=(5, 3, 6), seed=0) -> dict:
    """The dense form of compact_arrays: built by windows, so it is healthy."""
    compact = compact_arrays(lengths, seed)
    windows = sequence_windows(compact["doc_offsets"], C)
    vectors = compact["vectors"]
    return {"context_sequences": vectors[windows.context_rows(C)],
            "target_vectors": vectors[windows.target_rows],
            "doc_ids": windows.doc_index.astype(np.int64),
            "target_positions": windows.positions,
            **utf8_texts(CONCEPT_TEXTS, [f"t{i}" for i in windows.target_rows])}


def codes(arrays) -> list[str]:
    return validate_sequences(arrays).codes()


@pytest.mark.parametrize("make", [dense_arrays, compact_arrays])
def test_healthy_files_have_no_findings(make):
    report = validate_sequences(make())
    assert report.ok and report.findings == []
    assert report.stats["samples"] == 3 + 1 + 4
    assert report.stats["context_length"] == C


def test_missing_doc_ids_is_an_error_in_the_dense_form():
    arrays = dense_arrays()
    del arrays["doc_ids"]
    report = validate_sequences(arrays)
    assert not report.ok and report.codes() == ["MISSING_DOC_IDS"]


def test_missing_doc_offsets_is_missing_doc_ids_in_the_compact_form():
    arrays = compact_arrays()
    del arrays["doc_offsets"]
    assert "MISSING_DOC_IDS" in codes(arrays)


def test_legacy_two_key_file_is_reported_with_its_missing_arrays():
    arrays = dense_arrays()
    legacy = {"context_sequences": arrays["context_sequences"],
              "target_vectors": arrays["target_vectors"]}
    report = validate_sequences(legacy)
    assert report.codes() == ["MISSING_DOC_IDS", "MISSING_ARRAYS"]
    assert report.findings[1].examples == ["target_positions"]


def test_unknown_keys_are_missing_arrays():
    report = validate_sequences({"x": np.zeros(3)})
    assert report.codes() == ["MISSING_ARRAYS"] and report.findings[0].examples == ["x"]


def test_nonfinite_values_report_their_values_and_positions():
    arrays = dense_arrays()
    arrays["target_vectors"][3, 1] = np.nan
    arrays["context_sequences"][0, 1, 2] = np.inf
    arrays["context_sequences"][5, 0, 0] = -np.inf
    report = validate_sequences(arrays)
    finding = next(f for f in report.findings if f.code == "NONFINITE_VALUES")
    assert finding.count == 3
    assert [(e["array"], e["index"]) for e in finding.examples] == [
        ("context_sequences", [0, 1, 2]), ("context_sequences", [5, 0, 0]),
        ("target_vectors", [3, 1])]
    as_json = json.loads(report.to_json())
    values = [e["value"] for f in as_json["findings"] if f["code"] == "NONFINITE_VALUES"
              for e in f["examples"]]
    assert values == ["inf", "-inf", "nan"]


def test_nonfinite_message_names_only_the_arrays_that_hold_them():
    arrays = dense_arrays()
    arrays["target_vectors"][3, 1] = np.nan
    arrays["target_vectors"][4, 0] = np.inf
    finding = next(f for f in validate_sequences(arrays).findings
                   if f.code == "NONFINITE_VALUES")
    assert finding.message == "2 NaN or infinite value(s): 2 in target_vectors"
    arrays["context_sequences"][1, 0, 0] = np.nan
    finding = next(f for f in validate_sequences(arrays).findings
                   if f.code == "NONFINITE_VALUES")
    assert finding.message == ("3 NaN or infinite value(s): 1 in context_sequences, "
                               "2 in target_vectors")


def test_zero_vector_message_names_only_the_arrays_that_hold_them():
    arrays = dense_arrays()
    arrays["target_vectors"][2] = 0
    finding = next(f for f in validate_sequences(arrays).findings if f.code == "ZERO_VECTORS")
    assert finding.message == "1 all-zero vector(s): 1 in target_vectors"


def test_nonfinite_values_in_compact_vectors():
    arrays = compact_arrays()
    arrays["vectors"][7, 0] = np.nan
    finding = validate_sequences(arrays).findings[0]
    assert finding.code == "NONFINITE_VALUES"
    assert finding.examples[0]["index"] == [7, 0]


def test_context_crossing_a_document_boundary():
    # a sliding window over the whole corpus, ignoring documents: the classic bug
    compact = compact_arrays()
    vectors, offsets = compact["vectors"], compact["doc_offsets"]
    targets = np.arange(C, len(vectors))
    docs = np.searchsorted(offsets, targets, side="right") - 1
    arrays = {"context_sequences": vectors[targets[:, None] + np.arange(-C, 0)],
              "target_vectors": vectors[targets], "doc_ids": docs.astype(np.int64),
              "target_positions": (targets - offsets[docs]).astype(np.int32)}
    report = validate_sequences(arrays)
    finding = next(f for f in report.findings if f.code == "CONTEXT_CROSSES_DOC")
    assert finding.count == 4  # positions 0 and 1 of documents 1 and 2
    assert finding.examples[0] == {"sample": 3, "doc_id": 1, "target_position": 0}


def test_contexts_shifted_against_targets_are_misaligned():
    arrays = dense_arrays()
    arrays["target_vectors"] = np.roll(arrays["target_vectors"], 1, axis=0)
    report = validate_sequences(arrays)
    assert "CONTEXT_MISALIGNED" in report.codes()
    assert "CONTEXT_MISALIGNED" not in codes(dense_arrays())


def test_zero_vectors_are_found_in_contexts_and_vectors():
    arrays = dense_arrays()
    arrays["context_sequences"][2, 0] = 0
    finding = next(f for f in validate_sequences(arrays).findings if f.code == "ZERO_VECTORS")
    assert finding.count >= 1 and {"array": "context_sequences", "index": [2, 0]} in \
        finding.examples
    compact = compact_arrays()
    compact["vectors"][4] = 0
    zero = next(f for f in validate_sequences(compact).findings if f.code == "ZERO_VECTORS")
    assert zero.examples == [{"array": "vectors", "index": [4]}]


def test_duplicate_targets_trip_above_the_share():
    arrays = compact_arrays(lengths=(40, 40))
    arrays["vectors"][10:20] = arrays["vectors"][9]  # one vector is 11 of 76 targets
    report = validate_sequences(arrays)
    finding = next(f for f in report.findings if f.code == "DUPLICATE_TARGETS")
    assert finding.examples[0]["count"] == 11
    assert finding.examples[0]["samples"] == list(range(7, 12))
    assert finding.examples[0]["text"] == "t9"
    assert report.stats["largest_duplicate_group"] == 11
    relaxed = validate_sequences(arrays, max_duplicate_share=0.2)
    assert "DUPLICATE_TARGETS" not in relaxed.codes()


def test_a_pair_of_equal_targets_is_not_the_average_vector_trap():
    arrays = dense_arrays()
    arrays["target_vectors"][1] = arrays["target_vectors"][0]
    arrays["context_sequences"][2, -1] = arrays["target_vectors"][1]
    assert "DUPLICATE_TARGETS" not in codes(arrays)


def test_unit_norm_vectors_are_a_warning():
    arrays = compact_arrays()
    arrays["vectors"] /= np.linalg.norm(arrays["vectors"], axis=1, keepdims=True)
    report = validate_sequences(arrays)
    assert report.codes() == ["UNIT_NORM_VECTORS"] and report.ok
    assert report.exit_code(strict=True) == 1
    arrays["vectors"][0] *= 2
    assert "UNIT_NORM_VECTORS" not in codes(arrays)


def test_length_mismatch_between_per_sample_arrays():
    arrays = dense_arrays()
    arrays["doc_ids"] = arrays["doc_ids"][:-1]
    finding = validate_sequences(arrays).findings[0]
    assert finding.code == "LENGTH_MISMATCH"
    assert {"array": "doc_ids", "length": 7} in finding.examples


def test_length_mismatch_in_the_compact_form():
    arrays = compact_arrays()
    arrays.update(utf8_texts(TEXTS, ["a", "b", "c"]))
    arrays.update(utf8_texts(DOC_KEYS, ["k"]))
    report = validate_sequences(arrays)
    assert report.codes() == ["LENGTH_MISMATCH", "LENGTH_MISMATCH"]
    assert {"array": "texts", "length": 3} in report.findings[0].examples
    assert {"array": "doc_keys", "length": 1} in report.findings[1].examples


def test_length_mismatch_of_dense_texts():
    arrays = dense_arrays()
    arrays.update(utf8_texts(CONCEPT_TEXTS, ["only one"]))
    finding = validate_sequences(arrays).findings[0]
    assert finding.code == "LENGTH_MISMATCH"
    assert {"array": "concept_texts", "length": 1} in finding.examples


# texts as UTF-8 bytes plus offsets ----------------------------------------------------------
def text_problems(arrays) -> list[str]:
    report = validate_sequences(arrays)
    assert report.codes() == ["TEXTS_INVALID"], report.codes()
    return [e["problem"] for e in report.findings[0].examples]


def test_text_offsets_that_do_not_rise_from_zero_to_the_byte_count():
    arrays = compact_arrays()
    offsets = arrays["texts_offsets"].copy()
    offsets[0], offsets[-1] = 1, offsets[-1] + 5
    offsets[4], offsets[5] = offsets[5], offsets[4]
    arrays["texts_offsets"] = offsets
    assert text_problems(arrays) == [
        "texts_offsets starts at 1, not 0",
        f"texts_offsets ends at {offsets[-1]}, not at the {offsets[-1] - 5} bytes of texts_utf8",
        "texts_offsets decreases at 1 place(s), first after text 4"]


def test_text_bytes_that_are_not_utf8_name_the_byte_and_the_text():
    arrays = dense_arrays()
    arrays.update(utf8_texts(CONCEPT_TEXTS, ["ab", "cd", "éf", "x", "y", "z", "u", "v"]))
    arrays["concept_texts_utf8"] = arrays["concept_texts_utf8"].copy()
    arrays["concept_texts_utf8"][3] = 0xFF  # second byte of text 1
    report = validate_sequences(arrays)
    assert report.codes() == ["TEXTS_INVALID"]
    example = report.findings[0].examples[0]
    assert example["problem"].startswith("byte 3 is not UTF-8") and example["text"] == 1


def test_an_offset_inside_a_character_is_invalid():
    arrays = dense_arrays()
    arrays.update(utf8_texts(CONCEPT_TEXTS, ["é", "b", "c", "d", "e", "f", "g", "h"]))
    arrays["concept_texts_offsets"] = arrays["concept_texts_offsets"].copy()
    arrays["concept_texts_offsets"][1] = 1  # between the two bytes of é
    assert text_problems(arrays) == ["1 offset(s) fall inside a character, first 1"]


def test_text_bytes_without_offsets_are_missing_arrays_and_wrong_dtypes_are_reported():
    arrays = compact_arrays()
    del arrays["texts_offsets"]
    report = validate_sequences(arrays)
    assert report.codes() == ["MISSING_ARRAYS"] and report.findings[0].examples == [
        "texts_offsets"]
    arrays = compact_arrays()
    arrays["doc_keys_utf8"] = arrays["doc_keys_utf8"].astype(np.int64)
    report = validate_sequences(arrays)
    assert report.codes() == ["ARRAY_DTYPE"]
    assert report.findings[0].examples == [{"array": "doc_keys_utf8", "dtype": "int64"}]


def test_files_with_fixed_width_unicode_texts_still_validate():
    arrays = compact_arrays()
    for keys in (TEXTS, DOC_KEYS):
        del arrays[keys.utf8], arrays[keys.offsets]
    arrays["texts"] = np.array([f"t{i}" for i in range(14)])
    arrays["doc_keys"] = np.array(["d0", "d1", "d2"])
    assert validate_sequences(arrays).findings == []
    arrays["doc_keys"] = np.array(["d0"])
    assert validate_sequences(arrays).codes() == ["LENGTH_MISMATCH"]


def test_wrong_dtypes_and_shapes():
    arrays = dense_arrays()
    arrays["target_vectors"] = arrays["target_vectors"].astype(np.float64)
    arrays["doc_ids"] = arrays["doc_ids"].astype(np.float32)
    report = validate_sequences(arrays)
    assert report.codes() == ["ARRAY_DTYPE", "ARRAY_DTYPE"]
    flat = dense_arrays()
    flat["context_sequences"] = flat["context_sequences"].reshape(8, -1)
    assert validate_sequences(flat).codes() == ["ARRAY_SHAPE"]


def test_broken_doc_offsets():
    arrays = compact_arrays()
    arrays["doc_offsets"] = np.array([1, 9, 5, 13])
    finding = validate_sequences(arrays).findings[0]
    assert finding.code == "DOC_OFFSETS_INVALID" and finding.count == 3


def test_scan_in_blocks_finds_values_past_the_first_block(monkeypatch):
    import uncollapse.validators.sequences.scan as sequences

    monkeypatch.setattr(sequences, "BLOCK_VALUES", 3 * D)  # blocks of 3 rows
    arrays = compact_arrays()
    arrays["vectors"][11, 3] = np.nan
    finding = validate_sequences(arrays).findings[0]
    assert finding.examples[0]["index"] == [11, 3]
    assert validate_sequences(dense_arrays()).findings == []  # blocks split contexts and pairs
    shifted = dense_arrays()
    shifted["target_vectors"] = np.roll(shifted["target_vectors"], 1, axis=0)
    assert "CONTEXT_MISALIGNED" in validate_sequences(shifted).codes()
    repeated = compact_arrays(lengths=(40, 40))
    repeated["vectors"][10:20] = repeated["vectors"][9]
    assert validate_sequences(repeated).stats["largest_duplicate_group"] == 11


# command line -------------------------------------------------------------------------------
def test_cli_exit_codes_valid_invalid_and_could_not_run(tmp_path):
    healthy, broken = tmp_path / "ok.npz", tmp_path / "nodocs.npz"
    write_npz(healthy, dense_arrays())
    arrays = dense_arrays()
    del arrays["doc_ids"]
    write_npz(broken, arrays)
    ok = CliRunner().invoke(main, ["validate", "sequences", str(healthy)])
    assert ok.exit_code == 0, ok.output
    bad = CliRunner().invoke(main, ["validate", "sequences", str(broken), "--format", "json"])
    assert bad.exit_code == 1
    assert json.loads(bad.output)["findings"][0]["code"] == "MISSING_DOC_IDS"
    (tmp_path / "junk.npz").write_text("not a zip")
    junk = CliRunner().invoke(main, ["validate", "sequences", str(tmp_path / "junk.npz")])
    assert junk.exit_code == 2 and "not an NPZ archive" in junk.output


def test_cli_pickled_file_is_not_loaded(tmp_path):
    np.savez(tmp_path / "p.npz", target_vectors=np.array([object()], dtype=object))
    result = CliRunner().invoke(main, ["validate", "sequences", str(tmp_path / "p.npz")])
    assert result.exit_code == 2 and "holds Python objects" in result.output
    with pytest.raises(InputError):
        validate_sequences(tmp_path / "p.npz")


def test_cli_validates_a_built_file_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("UNCOLLAPSE_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "wiki.txt"
    source.write_text(" \n = A = \n \n one .\n two .\n three .\n four .\n \n = B = \n \n x .\n",
                      encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(main, ["build", "chunks", str(source), "--unit", "line", "-o",
                                str(tmp_path / "c.parquet")]).exit_code == 0
    np.save(tmp_path / "v.npy", np.random.default_rng(1).standard_normal((5, 8))
            .astype(np.float32))
    built = runner.invoke(main, ["build", "sequences", str(tmp_path / "c.parquet"),
                                 "--vectors", str(tmp_path / "v.npy"), "--context", "2",
                                 "-o", str(tmp_path / "s.npz")])
    assert built.exit_code == 0, built.output
    result = runner.invoke(main, ["validate", "sequences", str(tmp_path / "s.npz"),
                                  "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["ok"] and report["stats"]["samples"] == 2
