"""Data that is wrong is a finding with exit 1 (or a named input error, exit 2), never a raw
exception, a silent repair or an exit 0: all-null attribute columns, zero-width vectors, COCO
ids that are NaN or Infinity, repeated CSV columns, float32 outputs near 1e30, and a
``--dataset`` module that calls ``sys.exit(0)``."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from click.testing import CliRunner

from uncollapse.cli import main
from uncollapse.validators.collapse.diagnose import diagnose_embeddings


def codes(result) -> dict[str, dict]:
    return {f["code"]: f for f in json.loads(result.stdout)["findings"]}


def test_an_all_null_attribute_column_is_attr_non_binary(run, tmp_path):
    table = tmp_path / "attributes.parquet"
    pl.DataFrame({"image_id": ["a", "b", "c", "d"], "identity": [1, 2, 3, 4],
                  "split": ["train"] * 4, "Smiling": pl.Series([None] * 4, dtype=pl.Int8),
                  "Male": pl.Series([0, 1, 0, 1], dtype=pl.Int8)}).write_parquet(table)
    result = run("validate", "attributes", table, "--format", "json")
    assert result.exit_code == 1, result.output
    finding = codes(result)["ATTR_NON_BINARY"]
    assert finding["count"] == 4 and "Smiling" in finding["message"]
    assert json.loads(result.stdout)["stats"]["positive_share"]["Male"] == 0.5


def test_zero_width_vectors_are_refused_at_build(run, tmp_path):
    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps({"doc_id": "a", "text": f"t{i}"}) + "\n"
                              for i in range(4)))
    chunks = tmp_path / "chunks.parquet"
    assert run("build", "chunks", source, "--unit", "line", "--cache-dir", tmp_path / "c",
               "-o", chunks).exit_code == 0
    vectors = tmp_path / "vectors.npy"
    np.save(vectors, np.zeros((4, 0), np.float32))
    out = tmp_path / "seq.npz"
    result = run("build", "sequences", chunks, "--vectors", vectors, "--context", 2,
                 "--cache-dir", tmp_path / "c", "-o", out)
    assert result.exit_code == 2
    assert f"{vectors}: vectors have shape (4, 0): 0 dimensions" in result.output
    assert not out.exists()


@pytest.mark.parametrize("arrays, name", [
    ({"context_sequences": np.zeros((3, 2, 0), np.float32),
      "target_vectors": np.zeros((3, 0), np.float32), "doc_ids": np.zeros(3, np.int64),
      "target_positions": np.arange(2, 5, dtype=np.int32)}, "target_vectors"),
    ({"vectors": np.zeros((5, 0), np.float32), "doc_offsets": np.array([0, 5]),
      "context_length": np.int64(2)}, "vectors"),
])
def test_validate_sequences_reports_zero_width_vectors(run, tmp_path, arrays, name):
    path = tmp_path / "seq.npz"
    np.savez(path, **arrays)
    result = run("validate", "sequences", path, "--format", "json")
    assert result.exit_code == 1, result.output
    assert f"{name} has shape" in codes(result)["ARRAY_SHAPE"]["message"]
    assert "0 dimensions" in codes(result)["ARRAY_SHAPE"]["message"]


def test_coco_ids_that_are_nan_or_infinity_are_findings(run, tmp_path):
    source = tmp_path / "captions_val2017.json"
    source.write_text(
        '{"images": [{"id": NaN, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}, '
        '{"id": Infinity, "file_name": "c.jpg"}], "annotations": ['
        '{"image_id": NaN, "id": 1, "caption": "a dog"}, '
        '{"image_id": 2, "id": 2, "caption": "a cat"}, '
        '{"image_id": 2.0, "id": 3, "caption": "a cat again"}, '
        '{"image_id": 2.5, "id": 4, "caption": "half an image"}]}')
    out = tmp_path / "captions.parquet"
    result = run("build", "captions", source, "--cache-dir", tmp_path / "c", "-o", out,
                 "--format", "json")
    assert result.exit_code == 0, result.output
    invalid = [f for f in json.loads(result.stdout)["findings"]
               if f["code"] == "SOURCE_INVALID_ID"]
    assert [f["count"] for f in invalid] == [2, 2]
    assert [e["id"] for e in invalid[0]["examples"]] == ["NaN", "inf"]
    assert [e["image_id"] for e in invalid[1]["examples"]] == ["NaN", "2.5"]
    table = pl.read_parquet(out)
    assert table["image_id"].to_list() == ["2", "2"]  # 2.0 joins image 2, not "2.0"
    strict = run("build", "captions", source, "--cache-dir", tmp_path / "c", "--strict")
    assert strict.exit_code == 1


def test_a_coco_file_without_annotations_is_empty_not_a_raw_error(run, tmp_path):
    source = tmp_path / "captions_val2017.json"
    source.write_text('{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": []}')
    result = run("build", "captions", source, "--cache-dir", tmp_path / "c", "--format", "json")
    assert result.exit_code == 1, result.output
    assert "BUILD_EMPTY" in codes(result)
    assert "ColumnNotFoundError" not in result.output


@pytest.mark.parametrize("command", [
    ["build", "attributes", "{csv}", "--cache-dir", "{tmp}"],
    ["validate", "attributes", "{csv}"],
    ["validate", "flips", "--table", "{csv}"],
])
def test_a_repeated_attribute_column_is_an_error_naming_it(run, tmp_path, command):
    csv = tmp_path / "attributes.csv"
    csv.write_text("image_id,Smiling,Male,Smiling\na.jpg,1,-1,1\nb.jpg,-1,1,-1\n")
    result = run(*[a.format(csv=csv, tmp=tmp_path / "c") for a in command])
    assert result.exit_code == 2
    assert (f"{csv}, line 1: column 'Smiling' appears twice in the header (columns 2 and 4)"
            in result.output)
    assert "duplicated" not in result.output


@pytest.mark.parametrize("command", [["validate", "captions"],
                                     ["validate", "batches", "--sampler", "random", "-b", "1"]])
def test_a_repeated_caption_column_is_an_error_naming_it(run, tmp_path, command):
    csv = tmp_path / "captions.csv"
    csv.write_text("image_id,match_id,caption_idx,caption,split,source_row,match_id\n"
                   "1,1,0,a dog,train,0,2\n")
    result = run(*command, csv)
    assert result.exit_code == 2
    assert "column 'match_id' appears twice in the header (columns 2 and 7)" in result.output


@pytest.mark.parametrize("scale", [1e30, 3e37])
def test_finite_float32_outputs_near_1e30_do_not_overflow(scale):
    rng = np.random.default_rng(0)
    targets = rng.standard_normal((64, 16)).astype(np.float32)
    pred = targets + 0.1 * rng.standard_normal((64, 16)).astype(np.float32)
    small = diagnose_embeddings(torch.from_numpy(pred), torch.from_numpy(targets))
    big = diagnose_embeddings(torch.from_numpy((pred * scale).astype(np.float32)),
                              torch.from_numpy((targets * scale).astype(np.float32)))
    assert "MEAN_VECTOR_COLLAPSE" not in big.codes()
    assert np.isfinite(big.stats["norm_mean"])
    assert big.stats["norm_mean"] == pytest.approx(small.stats["norm_mean"] * scale, rel=1e-5)
    for key in ("cos_pred_target", "mean_vector_margin", "relative_spread", "uniformity"):
        assert big.stats[key] == pytest.approx(small.stats[key], rel=1e-4), key


@pytest.mark.parametrize("source", [
    "import sys\nsys.exit(0)\n",
    "import sys\nclass D:\n    def __len__(self):\n        return 3\n"
    "    def __getitem__(self, i):\n        sys.exit(0)\ndef make():\n    return D()\n",
    "raise RuntimeError('broken on import')\n",
])
def test_a_dataset_module_that_exits_does_not_make_validate_flips_pass(run, tmp_path, source):
    module = tmp_path / "my_dataset.py"
    module.write_text(source)
    result = run("validate", "flips", "--dataset", f"{module}:make")
    assert result.exit_code == 2
    assert f"--dataset {module}:make: the module" in result.output


def _invoke_as_unprivileged(args) -> tuple[int, str]:
    """Run the CLI where file permissions apply: as this user, or, under root (who reads
    everything), in a forked child that has dropped to uid/gid 65534 first."""
    if os.geteuid() != 0:
        result = CliRunner().invoke(main, args)
        return result.exit_code, result.output
    import uncollapse.data.captions.table  # noqa: F401 - imported before the child drops
    import uncollapse.pipeline.captions  # noqa: F401   the rights to read the environment
    import uncollapse.progress  # noqa: F401

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, run, report, and leave without cleanup
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            result = CliRunner().invoke(main, args)
            os.write(write_end, json.dumps([result.exit_code, result.output]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        payload = pipe.read()
    os.waitpid(pid, 0)
    return tuple(json.loads(payload))


@pytest.mark.parametrize("name, command", [
    ("captions_val2017.json", ["build", "captions"]),
    ("captions.parquet", ["build", "captions"]),
])
def test_an_unreadable_input_is_named_with_the_fix(name, command):
    # pytest's own temporary folders are private to root: this one is open to uid 65534
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        root = Path(folder)
        root.chmod(0o777)
        (root / "cache").mkdir(mode=0o777)
        (root / "cache").chmod(0o777)
        source = root / name
        source.write_text('{"images": [], "annotations": []}')
        source.chmod(0)
        code, output = _invoke_as_unprivileged([*command, str(source), "--cache-dir",
                                                str(root / "cache")])
    assert code == 2, output
    assert f"{source}: cannot be read (permission denied); check its permissions" in output
    assert "Errno" not in output and "PermissionError" not in output


def test_an_attribute_source_with_only_a_header_says_so(run, tmp_path):
    source = tmp_path / "attributes.csv"
    source.write_text("image_id,Smiling\n")
    result = run("build", "attributes", source, "--cache-dir", tmp_path / "c")
    assert result.exit_code == 2
    assert f"{source}: no valid attribute rows: the source has no data rows after its header" \
        in result.output


def test_a_trainer_error_keeps_the_build_command_it_names(run, tmp_path):
    """The option-name rewording of the train commands must not turn `build scenes` into
    `build --scenes` in the fix it gives."""
    scenes = tmp_path / "scenes.npz"
    scenes.write_bytes(b"")
    result = run("train", "slots", "--scenes", scenes, "--steps", 1, "--device", "cpu",
                 "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert f"{scenes}: is empty (0 bytes), not a scene NPZ; write it with `uncollapse build " \
           "scenes`" in result.output
