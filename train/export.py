"""``python -m train.export CKPT OUT.hcm``: a training checkpoint -> an integer-exact model file.

Writes :meth:`HybridModel.save` output (fixed-point weights, the entropy tables) and
prints the model id. Before writing, a short synthetic stereo frame is coded and decoded
with the exported model to check it round-trips bit-exactly. Use the file with
``hybridcodec encode --model OUT.hcm`` (and the same ``--model`` to decode).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from hybridcodec.framecodec import decode_frame, encode_frame
from hybridcodec.model import HybridModel, model_id_of

from .coded_bits import exported_copy
from .errors import report
from .module import model_from_checkpoint
from .nets import TrainableModel


def check_roundtrip(model: HybridModel, n: int = 5000) -> None:
    """Code and decode a noisy two-tone stereo frame; raise if it is not bit-exact."""
    rng = np.random.default_rng(0)
    t = np.arange(n)[:, None]
    x = 8000 * np.sin(2 * np.pi * np.array([[0.004, 0.017]]) * t) + rng.normal(0, 400, (n, 2))
    pcm = np.clip(np.round(x), -32768, 32767).astype(np.int64)
    layers = dict(encode_frame(model, pcm))
    out = decode_frame(model, layers, n, 2)
    if not np.array_equal(out, pcm):
        raise RuntimeError("exported model does not round-trip a test frame")


def export_model(model: TrainableModel, out: str | os.PathLike, description: str | None = None,
                 verify: bool = True) -> str:
    """Write ``model``'s integer-exact export to the model file ``out``; returns the model id."""
    if description:
        model.config.description = description
    exact = exported_copy(model)
    if verify:
        check_roundtrip(exact)
    exact.save(out)
    return model_id_of(exact)


def export_checkpoint(ckpt: str | os.PathLike, out: str | os.PathLike,
                      description: str | None = None, verify: bool = True) -> str:
    """Export ``ckpt`` to the model file ``out``; returns the model id."""
    return export_model(model_from_checkpoint(ckpt), out, description, verify)


def _run(argv: list[str] | None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.export", description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path, help="Lightning checkpoint (.ckpt) written by training")
    ap.add_argument("out", type=Path, help="model file to write (.hcm)")
    ap.add_argument("--description", help="replace the description stored in the model")
    ap.add_argument("--no-verify", action="store_true", help="skip the round-trip check")
    args = ap.parse_args(argv)
    model_id = export_checkpoint(args.checkpoint, args.out, args.description, not args.no_verify)
    print(f"{args.out}: model id {model_id}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m train.export``; a bad checkpoint is a one-line error (exit status 5)."""
    return report("python -m train.export", lambda: _run(argv))


if __name__ == "__main__":
    sys.exit(main())
