"""Benchmarks for hybridcodec against reference lossless codecs (see README.md)."""
