"""A chunk table whose text column holds bytes that are not UTF-8 gave `build sequences` a raw
polars ComputeError ("invalid utf8 ... strict_cast"); it is refused naming the column and row."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import CliRunner

from uncollapse.cli import main


def test_non_utf8_chunk_text_is_refused_naming_the_row(tmp_path):
    table = pa.table({"doc_id": pa.array([0, 0, 0, 1, 1, 1], pa.int64()),
                      "position": pa.array([0, 1, 2, 0, 1, 2], pa.int32()),
                      "text": pa.array([b"fine", b"also fine", b"\xff\xfe bad", b"a", b"b",
                                        b"c"], pa.binary())})
    pq.write_table(table, tmp_path / "chunks.parquet")
    np.save(tmp_path / "vectors.npy", np.ones((6, 4), np.float32))
    result = CliRunner().invoke(main, ["build", "sequences", str(tmp_path / "chunks.parquet"),
                                       "--vectors", str(tmp_path / "vectors.npy"),
                                       "--context", "1", "-o", str(tmp_path / "seq.npz"),
                                       "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "chunks.parquet: row 2: column 'text' holds bytes that are not UTF-8 text" in message
    assert "ComputeError" not in message
    assert not (tmp_path / "seq.npz").exists()
