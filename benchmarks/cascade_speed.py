"""Encode / decode speed (CPU time of one core, in process) of cascade variants.

Writes a model file per candidate (the default model with the candidate's config keys,
see cascade_study.py), then encodes and decodes CD stereo files with each, the
candidates interleaved, ``--repeat`` rounds, and prints per candidate the best round's
realtime factors and the stream size. CPU time (not wall time), so that other processes
on a shared machine disturb it less.

    PYTHONPATH=. python benchmarks/cascade_speed.py baseline ols4-d-mix64
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import soundfile as sf  # noqa: E402

import hybridcodec  # noqa: E402
from benchmarks.cascade_study import CANDIDATES, CORPUS, candidate_model  # noqa: E402
from hybridcodec.model import HybridModel, load_model  # noqa: E402

FILES = [f"music/cellar-{k:02d}.flac" for k in (1, 4, 8, 12)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="+")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    base, _ = load_model(None)
    tmp = Path(tempfile.mkdtemp(prefix="cascade-speed-"))
    seconds = sum(sf.info(str(CORPUS / f)).duration for f in FILES)
    paths = {}
    for name in args.names:
        model = candidate_model(base, CANDIDATES[name])
        path = tmp / f"{name}.hcm"
        path.write_bytes(HybridModel.from_bytes(model.to_bytes()).to_bytes())
        paths[name] = str(path)
        hybridcodec.encode(CORPUS / FILES[0], tmp / "w.hyb", overwrite=True, model=paths[name])
        hybridcodec.decode(tmp / "w.hyb", tmp / "w.wav", overwrite=True, model=paths[name])
    best = {name: [float("inf"), float("inf"), 0] for name in args.names}
    for _ in range(args.repeat):
        for name in args.names:
            enc = dec = 0.0
            size = 0
            for f in FILES:
                t = time.process_time()
                hybridcodec.encode(CORPUS / f, tmp / "a.hyb", overwrite=True, model=paths[name])
                enc += time.process_time() - t
                t = time.process_time()
                hybridcodec.decode(tmp / "a.hyb", tmp / "a.wav", overwrite=True,
                                   model=paths[name])
                dec += time.process_time() - t
                size += (tmp / "a.hyb").stat().st_size
            b = best[name]
            b[0], b[1], b[2] = min(b[0], enc), min(b[1], dec), size
    for name, (enc, dec, size) in best.items():
        print(f"{name:24s} encode {seconds / enc:5.1f}x  decode {seconds / dec:5.1f}x  "
              f"{size} bytes", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
