"""Corpora to chunk tables, and chunk tables plus vectors to next-vector sequence files."""

from uncollapse.pipeline.sequences.stages import build_chunks, build_sequences, encode_chunks

__all__ = ["build_chunks", "build_sequences", "encode_chunks"]
