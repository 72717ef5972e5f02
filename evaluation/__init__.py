"""Evaluation tools for hybridcodec: measurements of the codec, not part of it.

``python -m evaluation.ladder FILE --out DIR`` writes the ladder report (every tier against
Opus and MP3 at matched rates). The ``hybridcodec`` package never imports this one; it is
run from the repository root and is not installed with the package.
"""
