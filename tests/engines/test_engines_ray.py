"""``--engine ray``: the same outputs as the local engine, on a local Ray of 2 CPUs.

One Ray serves the whole module (starting one costs about 10 s); the tests keep their data
small. Every engine command is compared with the local engine's output: byte-identical files
for the builds, the same report for the check.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

from uncollapse.cache.store import Cache
from uncollapse.engines import ray as ray_engine
from uncollapse.engines.ray import RayEngine
from uncollapse.errors import ToolError
from uncollapse.pipeline.captions import build_captions
from uncollapse.validators.captions import validate_captions

ROOT = Path(__file__).resolve().parents[2]
COCO = ROOT / "data" / "coco" / "captions_val2017_1000.json"


# no Ray needed -------------------------------------------------------------------------------

def test_missing_ray_names_the_extra(tmp_path, run, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    table = tmp_path / "captions.parquet"
    _caption_table().write_parquet(table)
    result = run("validate", "captions", table, "--engine", "ray")
    assert result.exit_code == 2
    assert "ray is not installed" in result.output and ".[ray]" in result.output


def test_ray_address_without_the_ray_engine_is_a_usage_error(tmp_path, run):
    result = run("validate", "captions", tmp_path / "x.parquet", "--ray-address", "auto")
    assert result.exit_code == 2 and "--ray-address needs --engine ray" in result.output


class _FakeRay:
    """Records how the engine starts Ray (no Ray is started)."""

    def __init__(self, fail: Exception | None = None):
        self.calls, self.fail, self.up = [], fail, False
        context = SimpleNamespace(execution_options=SimpleNamespace(), enable_progress_bars=None)
        self.data = SimpleNamespace(DataContext=SimpleNamespace(get_current=lambda: context))

    def is_initialized(self):
        return self.up

    def init(self, **kwargs):
        self.calls.append(("init", kwargs))
        if self.fail:
            raise self.fail
        self.up = True

    def shutdown(self):
        self.calls.append(("shutdown", {}))
        self.up = False


def test_ray_address_connects_to_the_cluster_and_none_starts_a_quiet_local_ray(monkeypatch):
    fake = _FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    with RayEngine().session():
        pass
    monkeypatch.delenv("RAY_ADDRESS")
    with RayEngine(address="auto").session():
        pass
    with RayEngine(num_cpus=2).session():
        assert fake.data.DataContext.get_current().execution_options.preserve_order is True
    quiet = {"log_to_driver": False, "logging_level": 40}
    assert fake.calls == [
        ("init", {"address": "ray://head:10001", **quiet}), ("shutdown", {}),
        ("init", {"address": "auto", **quiet}), ("shutdown", {}),
        ("init", {"num_cpus": 2, "include_dashboard": False, **quiet}), ("shutdown", {})]


def test_an_unreachable_cluster_is_a_tool_error_naming_the_address(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", _FakeRay(fail=ConnectionError("no head")))
    with pytest.raises(ToolError, match=r"cannot start or reach the Ray cluster at "
                                        r"ray://head:1: no head\. Check --ray-address"):
        with RayEngine(address="ray://head:1").session():
            pass


class _ChunkingEngine:
    """Runs the function here, and hands its table back in pieces, as one sent back by a Ray
    worker arrives (deserialised in several chunks)."""

    def run(self, fn, *args, what, **kwargs):
        table, *rest = fn(*args, **kwargs)
        pieces = [table.slice(start, 250_000) for start in range(0, table.height, 250_000)]
        return (pl.concat(pieces, rechunk=False), *rest)


def test_a_table_that_comes_back_in_chunks_is_written_as_the_local_one(tmp_path):
    # more rows than one Parquet row group: chunks would change where the groups end
    source = tmp_path / "big.token.txt"
    images = np.repeat(np.arange(120_000), 5)
    source.write_text("".join(f"{i}.jpg#{n}\tcap {i} {n}\n"
                              for i, n in zip(images, np.tile(np.arange(5), 120_000),
                                              strict=True)))
    local = build_captions(source, cache=Cache(tmp_path / "local"))
    chunked = build_captions(source, cache=Cache(tmp_path / "other"), engine=_ChunkingEngine())
    assert local.report.stats["captions"] == 600_000
    assert chunked.path.read_bytes() == local.path.read_bytes()


# on a local Ray ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UNCOLLAPSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def _caption_table() -> pl.DataFrame:
    """Groups with every kind of fault a rule looks for, spread over several partitions."""
    rows = []
    for group in range(40):
        for idx in range(5 if group % 7 else 3):  # groups 0, 7, 14, ...: too small
            rows.append((f"img{group:03d}", group, idx, f"a photo of thing {group} view {idx}",
                         "train" if group < 30 else "val", len(rows)))
    rows.append(("img005", 5, 9, "a photo of thing 5 view 0", "test", len(rows)))  # dup, leak
    rows.append(("img006", 31, 0, "shared words", "train", len(rows)))  # image in two groups
    rows.append(("img032", 32, 7, "shared words", "val", len(rows)))  # shared across groups
    rows.append(("img033", 33, 8, "tab\there img1.jpg#2", "val", len(rows)))  # control, key
    rows.append(("img034", 34, 9, "x", "val", len(rows)))  # too short
    image, match, idx, caption, split, source_row = zip(*rows, strict=True)
    return pl.DataFrame({"image_id": image, "match_id": match, "caption_idx": idx,
                         "caption": caption, "split": split, "source_row": source_row},
                        schema={"image_id": pl.String, "match_id": pl.Int64,
                                "caption_idx": pl.Int16, "caption": pl.String,
                                "split": pl.String, "source_row": pl.Int64})


def test_validate_captions_on_ray_reports_what_the_local_engine_reports(tmp_path, local_ray,
                                                                        run):
    table = tmp_path / "captions.parquet"
    _caption_table().write_parquet(table, row_group_size=50)
    local = validate_captions(table, min_group=4).to_dict()
    on_ray = validate_captions(table, min_group=4, engine=RayEngine(partitions=3)).to_dict()
    assert on_ray == local
    assert {f["code"] for f in local["findings"]} >= {
        "GROUP_SIZE_OUT_OF_RANGE", "SPLIT_LEAKAGE", "MATCH_ID_INCONSISTENT",
        "CAPTION_DUPLICATE_IN_GROUP", "CAPTION_SHARED_ACROSS_GROUPS",
        "CAPTION_CONTROL_CHARACTER", "CAPTION_HOLDS_RECORD_KEY", "CAPTION_LENGTH_IMPLAUSIBLE"}
    # a folder of shards: rows numbered across them, groups split between them
    shards = tmp_path / "shards"
    shards.mkdir()
    for number, start in enumerate(range(0, 205, 70)):
        _caption_table().slice(start, 70).write_parquet(shards / f"part-{number:05d}.parquet")
    local_shards = validate_captions(shards, min_group=4).to_dict()
    assert validate_captions(shards, min_group=4, engine=RayEngine()).to_dict() == local_shards
    # slices checked where they are read, groups cut between them: the same report
    by_slices = RayEngine(partitions=3, group_partitions=False)
    assert validate_captions(table, min_group=4, engine=by_slices).to_dict() == local
    assert local_shards["findings"] == local["findings"]
    # the command line: the same JSON report and exit code
    args = ("validate", "captions", table, "--min-group", 4, "--format", "json")
    by_cli = run(*args, "--engine", "ray", "--quiet")
    assert by_cli.exit_code == run(*args).exit_code == 1
    assert json.loads(by_cli.stdout) == json.loads(run(*args).stdout)


def test_build_captions_on_ray_writes_the_local_engines_bytes(tmp_path, local_ray, run):
    local = build_captions(COCO, cache=Cache(tmp_path / "local"))
    result = run("build", "captions", COCO, "--engine", "ray", "--quiet",
                 "-o", tmp_path / "ray.parquet", "--format", "json")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ray.parquet").read_bytes() == local.path.read_bytes()
    assert json.loads(result.stdout) == local.report.to_dict()


@pytest.mark.parametrize("one_per_row", [False, True])
def test_build_captions_from_shards_on_ray_partitions_writes_the_local_engines_bytes(
        tmp_path, local_ray, one_per_row):
    from tests.pipeline.captions.test_build_captions_streamed import flickr30k_rows, write_source

    source = write_source(flickr30k_rows(one_per_row), tmp_path / "source")
    calls = []

    class Counting(RayEngine):
        def group_slices(self, *args, **kwargs):
            parts = super().group_slices(*args, **kwargs)
            calls.append(len(parts))
            return parts

    for splits in (None, ["train", "val"]):
        local = build_captions(source, splits=splits, cache=Cache(tmp_path / "local"))
        on_ray = build_captions(source, splits=splits, cache=Cache(tmp_path / "ray"),
                                engine=Counting(partitions=3))
        assert on_ray.path.read_bytes() == local.path.read_bytes()
        assert on_ray.report.to_dict() == local.report.to_dict()
        assert on_ray.entry.key == local.entry.key
        sharded = build_captions(source, splits=splits, cache=Cache(tmp_path / "ray"),
                                 engine=Counting(partitions=3), shard_rows=100)
        local_shards = build_captions(source, splits=splits, cache=Cache(tmp_path / "local"),
                                      shard_rows=100)
        assert ([f["sha256"] for f in sharded.entry.manifest["files"].values()]
                == [f["sha256"] for f in local_shards.entry.manifest["files"].values()])
    assert calls == [3, 3, 3, 3]  # every build went partition by partition


def test_build_chunks_on_ray_writes_the_local_engines_bytes(tmp_path, local_ray, run):
    corpus = tmp_path / "corpus.jsonl"
    records = [{"doc_id": f"d{i % 5}", "text": f"Para {i}. Second {i}!\n\n  \n\nNext."}
               for i in range(20)] + [{"doc_id": "blank", "text": " \n\n "}]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in records))
    args = ("build", "chunks", corpus, "--unit", "sentence", "--format", "json")
    local = run(*args, "-o", tmp_path / "local.parquet", "--cache-dir", tmp_path / "c1")
    on_ray = run(*args, "-o", tmp_path / "ray.parquet", "--cache-dir", tmp_path / "c2",
                 "--engine", "ray")
    assert local.exit_code == on_ray.exit_code == 0, on_ray.output
    assert (tmp_path / "ray.parquet").read_bytes() == (tmp_path / "local.parquet").read_bytes()
    assert json.loads(on_ray.stdout) == json.loads(local.stdout)
    stats = json.loads(on_ray.stdout)["stats"]
    assert (stats["documents"], stats["chunks"], stats["empty_documents_dropped"]) == (5, 60, 1)


class _FakeEncoder:
    """A deterministic stand-in for a sentence-transformers model: [len, 3] from the text."""

    def encode(self, texts, batch_size, convert_to_numpy, show_progress_bar):
        lengths = np.array([len(t) for t in texts], dtype=np.float32)
        sums = np.array([sum(map(ord, t)) for t in texts], dtype=np.float32)
        return np.stack([lengths, sums % 97, np.full_like(lengths, len(texts))], axis=1)

    def get_sentence_embedding_dimension(self):
        return 3


def _load_fake(model_dir, device="cpu"):
    return _FakeEncoder()


def test_encoder_pool_gives_the_local_sequence_file_even_if_an_actor_dies(tmp_path, local_ray,
                                                                         monkeypatch):
    from ray import cloudpickle

    from uncollapse.pipeline.sequences import build_chunks, build_sequences, encode

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import it
    monkeypatch.setattr(encode, "load_encoder", _load_fake)
    model = tmp_path / "model"
    model.mkdir()
    (model / "modules.json").write_text("[]")
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"doc_id": f"d{i % 4}", "text": "w" * (i % 11 + 1)})
                              + "\n" for i in range(50)))
    chunks = build_chunks(corpus, cache=Cache(tmp_path / "c0")).path
    common = {"context_length": 2, "encoder": str(model), "batch_size": 4}
    local = build_sequences(chunks, cache=Cache(tmp_path / "c1"), **common)
    engine = RayEngine(encoder_actors=2, load_encoder=_load_fake)
    marker = tmp_path / "crash-once"  # an actor dies mid-encoding: restarted, batch redone
    marker.touch()
    monkeypatch.setattr(ray_engine, "CRASH_ONCE_MARKER", str(marker))
    on_ray = build_sequences(chunks, cache=Cache(tmp_path / "c2"), engine=engine, **common)
    assert not marker.exists()
    assert on_ray.path.read_bytes() == local.path.read_bytes()
    # the batches are the local ones: a vector's last value is the size of its batch
    [vectors] = (tmp_path / "c2").rglob("vectors.npy")
    assert np.load(vectors, allow_pickle=False)[:, 2].tolist() == [4] * 48 + [2] * 2
    assert on_ray.report.stats == local.report.stats and on_ray.report.stats["samples"] == 42


def _chunks_and_vectors(tmp_path: Path) -> tuple[Path, Path]:
    """Documents of 0-8 chunks (some too short for a window) with doc_ids that skip numbers,
    texts that are not ASCII, and float64 vectors (converted to float32 on the way)."""
    rng = np.random.default_rng(7)
    lengths = rng.integers(1, 9, 30)
    doc = np.repeat(np.arange(30, dtype=np.int64) * 5 + 2, lengths)
    position = np.concatenate([np.arange(n) for n in lengths]).astype(np.int32)
    chunks = pl.DataFrame({"doc_id": doc, "doc_key": [f"dok-{d}-é" for d in doc],
                           "position": position,
                           "text": [f"{d}.{p} — ünïcode" for d, p in zip(doc, position,
                                                                         strict=True)]})
    chunks.write_parquet(tmp_path / "chunks.parquet")
    np.save(tmp_path / "vectors.npy", rng.standard_normal((chunks.height, 6)))
    return tmp_path / "chunks.parquet", tmp_path / "vectors.npy"


class _Spy:
    """A RayEngine whose ``map_groups`` records what each partition gave back."""

    def __init__(self, engine):
        self.engine, self.parts = engine, []

    def map_groups(self, *args, **kwargs):
        self.parts = self.engine.map_groups(*args, **kwargs)
        return self.parts


@pytest.mark.parametrize("compact", [False, True], ids=["dense", "compact"])
def test_build_sequences_on_ray_cuts_the_windows_per_partition_into_the_local_bytes(
        tmp_path, local_ray, compact):
    from uncollapse.pipeline.sequences import build_sequences

    chunks, vectors = _chunks_and_vectors(tmp_path)
    common = {"vectors": vectors, "context_length": 3, "compact": compact}
    local = build_sequences(chunks, cache=Cache(tmp_path / "c1"), **common)
    spy = _Spy(RayEngine(partitions=3))
    on_ray = build_sequences(chunks, cache=Cache(tmp_path / "c2"), engine=spy, **common)
    assert on_ray.path.read_bytes() == local.path.read_bytes()
    assert on_ray.report.stats == local.report.stats
    # the windows came from 3 partitions of whole documents, each a stable hash of its doc_id
    from uncollapse.engines.local import partition_key

    documents = [part.documents["doc_id"].to_list() for part in spy.parts]
    assert len(documents) == 3 and sorted(sum(documents, [])) == list(range(2, 150, 5))
    partitions = [np.unique(partition_key({"doc_id": np.array(ids)}, "doc_id", 3)).tolist()
                  for ids in documents]
    assert sorted(partitions) == [[0], [1], [2]]  # in whatever order Ray finished them
    assert sum(part.samples for part in spy.parts) == local.report.stats["samples"] > 0
    assert local.report.stats["short_documents"] > 0
    if not compact:
        assert sum(len(part.context_sequences) for part in spy.parts) == \
            local.report.stats["samples"]


def test_build_sequences_command_on_ray_writes_the_local_engines_bytes(tmp_path, local_ray, run):
    chunks, vectors = _chunks_and_vectors(tmp_path)
    for flags in ((), ("--compact",), ("--no-texts",)):
        args = ("build", "sequences", chunks, "--vectors", vectors, "--context", 2, *flags,
                "--quiet", "--format", "json")
        local = run(*args, "-o", tmp_path / "local.npz", "--cache-dir", tmp_path / "c1")
        on_ray = run(*args, "-o", tmp_path / "ray.npz", "--cache-dir", tmp_path / "c2",
                     "--engine", "ray")
        assert local.exit_code == on_ray.exit_code == 0, on_ray.output
        assert (tmp_path / "ray.npz").read_bytes() == (tmp_path / "local.npz").read_bytes()
        assert json.loads(on_ray.stdout) == json.loads(local.stdout)


def test_a_worker_lost_cutting_the_windows_commits_nothing_and_a_rerun_completes(
        tmp_path, local_ray, monkeypatch):
    from uncollapse.pipeline.sequences import build_sequences

    chunks, vectors = _chunks_and_vectors(tmp_path)
    local = build_sequences(chunks, vectors=vectors, context_length=2,
                            cache=Cache(tmp_path / "local"))
    marker = tmp_path / "crash-once"  # --vectors: the windows are the build's only Ray tasks
    marker.touch()
    monkeypatch.setattr(ray_engine, "CRASH_ONCE_MARKER", str(marker))
    cache = Cache(tmp_path / "cache")
    with pytest.raises(ToolError, match="cutting the sequence windows: a Ray worker was lost"
                                        ".*nothing was written or cached"):
        build_sequences(chunks, vectors=vectors, context_length=2, cache=cache,
                        engine=RayEngine(partitions=3, max_retries=0))
    assert not marker.exists()  # a windowing task did die
    assert list((tmp_path / "cache").rglob("manifest.json")) == []
    assert list((tmp_path / "cache").rglob("*.npz")) == []
    marker.touch()  # with retries the lost task runs again, and so does a plain rerun
    retried = build_sequences(chunks, vectors=vectors, context_length=2, cache=cache,
                              engine=RayEngine(partitions=3))
    assert not marker.exists()
    assert retried.path.read_bytes() == local.path.read_bytes()


def test_a_worker_lost_without_retries_commits_nothing(tmp_path, local_ray, monkeypatch):
    marker = tmp_path / "crash-once"
    marker.touch()
    monkeypatch.setattr(ray_engine, "CRASH_ONCE_MARKER", str(marker))
    cache = Cache(tmp_path / "cache")
    with pytest.raises(ToolError, match="Ray worker was lost.*nothing was written or cached"):
        build_captions(COCO, cache=cache, engine=RayEngine(max_retries=0))
    assert not marker.exists()  # the task did die
    assert list((tmp_path / "cache").rglob("manifest.json")) == []
    assert list((tmp_path / "cache").rglob("captions.parquet")) == []


def test_a_worker_lost_mid_build_is_retried_and_the_build_completes(tmp_path, local_ray, run,
                                                                    monkeypatch):
    marker = tmp_path / "crash-once"
    marker.touch()
    monkeypatch.setattr(ray_engine, "CRASH_ONCE_MARKER", str(marker))
    result = run("build", "captions", COCO, "--engine", "ray", "--quiet",
                 "-o", tmp_path / "out.parquet")
    assert result.exit_code == 0, result.output
    assert not marker.exists()  # the first attempt died; Ray ran the task again
    local = build_captions(COCO, cache=Cache(tmp_path / "local"))
    assert (tmp_path / "out.parquet").read_bytes() == local.path.read_bytes()


def test_progress_bars_are_rays_own_unless_quiet(local_ray):
    context = local_ray.data.DataContext.get_current()
    with RayEngine().session():
        assert context.enable_progress_bars is True
    with RayEngine(quiet=True).session():
        assert context.enable_progress_bars is False


def test_bench_engines_compares_the_engines_with_a_fake_encoder(local_ray, monkeypatch):
    from ray import cloudpickle

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import bench_engines

    cloudpickle.register_pickle_by_value(bench_engines)
    result = bench_engines.run(rows=500, encoder="fake", texts=100, batch_size=16,
                               device="cpu")
    tables, encoder = result["tables"], result["encoder"]
    assert tables["rows"] == 500 and tables["build_captions"]["captions"] == 500
    assert tables["validate"]["findings"] == []
    assert tables["validate"]["local_s"] > 0 and tables["validate"]["ray_s"] > 0
    assert tables["validate"]["ray_by_slices_s"] > 0
    assert encoder["texts"] == 100 and encoder["ray_one_actor_sentences_per_s"] > 0


def test_encoder_pool_options_need_the_ray_engine(tmp_path, run):
    (tmp_path / "chunks.parquet").touch()
    (tmp_path / "v.npy").touch()
    result = run("build", "sequences", tmp_path / "chunks.parquet", "--vectors",
                 tmp_path / "v.npy", "--context", 2, "--encoder-actors", 2)
    assert result.exit_code == 2
    assert "--encoder-actors and --gpus-per-actor need --engine ray" in result.output


def test_ray_data_reads_the_shards_of_a_sharded_build_as_docs_scaling_says(tmp_path, local_ray,
                                                                           run):
    # docs/scaling.md: `ray.data.read_parquet("captions/")` on the folder `-o DIR/` writes
    out = tmp_path / "captions"
    built = run("build", "captions", COCO, "-o", f"{out}/", "--shard-rows", 2000, "--quiet")
    assert built.exit_code == 0, built.output
    assert (out / "manifest.json").is_file() and len(list(out.glob("*.parquet"))) == 3
    on_ray = local_ray.data.read_parquet(str(out)).to_pandas()
    local = pl.scan_parquet(out / "*.parquet").collect()
    assert len(on_ray) == local.height == 5005
    assert sorted(on_ray["source_row"]) == sorted(local["source_row"].to_list())
