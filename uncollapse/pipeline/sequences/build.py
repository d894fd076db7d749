"""The cached builds behind ``uncollapse build chunks`` and ``uncollapse build sequences``.

``build_chunks`` and ``build_sequences`` return a ``Built`` (``uncollapse.pipeline.result``):
the output in the cache, and a build report whose stats are the counts of the build.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from uncollapse.atomic import atomic_path
from uncollapse.cache.store import BuildOutput, Cache, Entry, Stage
from uncollapse.data.sequences.chunks import load_chunks, write_chunks
from uncollapse.data.sequences.contract import CHUNK_DOC_ID, CHUNK_TEXT
from uncollapse.errors import ToolError
from uncollapse.pipeline.rejected import BuildRejected, vector_findings
from uncollapse.pipeline.result import Built, built_from, with_report
from uncollapse.pipeline.sequences.corpus import check_glob, detect_kind, read_chunks
from uncollapse.pipeline.sequences.encode import encode_texts, load_encoder, resolve_encoder
from uncollapse.pipeline.sequences.sequence_file import load_vectors, write_sequences
from uncollapse.report import Report

__all__ = ["CHUNKS_FILE", "SEQUENCES_FILE", "VECTORS_FILE", "build_chunks", "build_sequences",
           "encode_chunks"]

CHUNKS_FILE = "chunks.parquet"
SEQUENCES_FILE = "sequences.npz"
VECTORS_FILE = "vectors.npy"

CHUNKS_STAGE = Stage("chunks", 2, ("uncollapse.pipeline.sequences.corpus",))
SEQUENCES_STAGE = Stage("sequences", 2, ("uncollapse.pipeline.sequences.sequence_file",))
ENCODE_STAGE = Stage("chunk-vectors", 1, ("uncollapse.pipeline.sequences.encode",))


def build_chunks(source: str | Path, *, unit: str = "paragraph", kind: str = "auto",
                 doc_field: str = CHUNK_DOC_ID, text_field: str = CHUNK_TEXT,
                 doc_pattern: str | None = None, glob: str = "*.txt",
                 cache: Cache | None = None, rebuild: bool = False, engine=None) -> Built:
    """Build (or fetch from the cache) the chunk table of ``source``; see ``read_chunks``.

    ``engine``: where the documents are split into chunks (``RayEngine``: partitions of whole
    documents in Ray tasks); by default in this process. The output is the same either way,
    and so is its cache key.

    ``built.path`` is ``chunks.parquet``; ``built.report.stats`` holds the counts (documents,
    chunks, what was dropped).

    Example:
        >>> built = build_chunks("wikitext2_test.txt", unit="line")
        >>> built.table().height, built.report.stats["documents"]
    """
    # the kind a suffix implies decides how the bytes are read, so the key holds it resolved
    kind = detect_kind(Path(source)) if kind == "auto" else kind
    if kind == "folder":
        check_glob(glob)  # before the folder is hashed
    options = {"unit": unit, "kind": kind, "doc_field": doc_field, "text_field": text_field,
               "doc_pattern": doc_pattern, "glob": glob}

    def builder(out_dir: Path) -> BuildOutput:
        chunks, stats = read_chunks(source, **options, engine=engine)
        write_chunks(chunks.rechunk(), out_dir / CHUNKS_FILE)  # row groups: one layout
        output = BuildOutput(rows={CHUNKS_FILE: chunks.height},
                             schema={CHUNKS_FILE: {k: str(v) for k, v in chunks.schema.items()}})
        return with_report(output, Report(str(source), "build chunks", [], stats.to_dict()))

    entry = (cache or Cache()).build(CHUNKS_STAGE, options=options, inputs={"source": source},
                                     builder=builder, rebuild=rebuild)
    return built_from(entry, CHUNKS_FILE)


def encode_chunks(chunks_path: str | Path, model: str, *, batch_size: int = 64,
                  device: str = "cpu", quiet: bool = False, cache: Cache | None = None,
                  rebuild: bool = False, engine=None) -> Entry:
    """Encode every chunk's text with a local sentence-transformers model (cached .npy).

    ``engine``: where the encoder runs (``RayEngine``: a pool of encoder actors, GPUs
    included); by default in this process. Either way the vectors share one cache entry.
    """
    model_dir = resolve_encoder(model)

    def builder(out_dir: Path) -> BuildOutput:
        texts = load_chunks(chunks_path)[CHUNK_TEXT].fill_null("").to_list()
        if engine is None:
            vectors = encode_texts(texts, str(model_dir), batch_size=batch_size, device=device,
                                   quiet=quiet)
        else:
            vectors = engine.encode_texts(texts, str(model_dir), load=load_encoder,
                                          batch_size=batch_size, device=device, quiet=quiet)
        with atomic_path(out_dir / VECTORS_FILE) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, vectors)
        return BuildOutput(rows={VECTORS_FILE: len(vectors)},
                           result={"dim": int(vectors.shape[1]), "model": str(model_dir)})

    def check(out_dir: Path, output: BuildOutput) -> None:
        rows = load_chunks(chunks_path).height
        vectors = np.load(out_dir / VECTORS_FILE, mmap_mode="r", allow_pickle=False)
        if vectors.ndim != 2 or vectors.shape[0] != rows or vectors.shape[1] < 1:
            raise ToolError(f"encoding {chunks_path} with {model} gave vectors of shape "
                            f"{vectors.shape} for {rows} chunk rows (expected [{rows}, dim "
                            "> 0]); nothing was cached, check the encoder and --batch-size")
        refuse_bad_vectors(vectors, out_dir / VECTORS_FILE, chunks_path)

    return (cache or Cache()).build(ENCODE_STAGE, options={},
                                    inputs={"chunks": chunks_path, "model": model_dir},
                                    builder=builder, rebuild=rebuild, check=check)


def refuse_bad_vectors(vectors: np.ndarray, path: str | Path, chunks_path: str | Path) -> None:
    """Raise ``BuildRejected`` when a vector row holds NaN/inf or only zeros: the sequence file
    built from it would fail ``validate sequences``."""
    findings = vector_findings(vectors, path)
    if findings:
        raise BuildRejected(Report(str(chunks_path), "build sequences", findings,
                                   {"chunks": int(vectors.shape[0]),
                                    "dim": int(vectors.shape[1])}))


def build_sequences(chunks_path: str | Path, *, context_length: int,
                    vectors: str | Path | None = None, encoder: str | None = None,
                    compact: bool = False, texts: bool = True, batch_size: int = 64,
                    device: str = "cpu", quiet: bool = False, cache: Cache | None = None,
                    rebuild: bool = False, engine=None) -> Built:
    """Build (or fetch) the sequence NPZ from a chunk table and vectors or an encoder.

    Exactly one of ``vectors`` (a ``.npy`` aligned to the chunk rows, memory-mapped) and
    ``encoder`` (a local model folder or installed model package) is given. ``built.path`` is
    ``sequences.npz`` (docs/data-contracts.md, "Sequence file"); ``built.report.stats`` holds
    the counts (samples, documents, documents too short for a sample). ``engine``: where the
    encoder runs (see ``encode_chunks``) and the windows are cut (``RayEngine``: partitions
    of whole documents, by a stable hash of ``doc_id``, on its workers; see
    ``write_sequences``); the file and its cache key are the same either way.

    Example:
        >>> built = build_sequences("chunks.parquet", vectors="vectors.npy", context_length=4)
        >>> built.report.stats["samples"]
    """
    if (vectors is None) == (encoder is None):
        raise ToolError("give exactly one of vectors (a .npy file) and encoder (a model)")
    if context_length < 1:
        raise ToolError(f"context_length must be at least 1, not {context_length}")
    cache = cache or Cache()
    if encoder is not None:
        vectors = encode_chunks(chunks_path, encoder, batch_size=batch_size, device=device,
                                quiet=quiet, cache=cache, rebuild=rebuild,
                                engine=engine).file(VECTORS_FILE)
    options = {"context_length": context_length, "compact": compact, "texts": texts}

    def builder(out_dir: Path) -> BuildOutput:
        chunks = load_chunks(chunks_path)
        array = load_vectors(vectors, chunks.height)
        refuse_bad_vectors(array, vectors, chunks_path)
        stats = write_sequences(chunks, array, context_length, out_dir / SEQUENCES_FILE,
                                compact=compact, texts=texts, engine=engine)
        return with_report(BuildOutput(rows={SEQUENCES_FILE: stats["samples"]}),
                           Report(str(chunks_path), "build sequences", [], stats))

    entry = cache.build(SEQUENCES_STAGE, options=options,
                        inputs={"chunks": chunks_path, "vectors": vectors},
                        builder=builder, rebuild=rebuild)
    return built_from(entry, SEQUENCES_FILE)
