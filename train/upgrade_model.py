"""``python -m train.upgrade_model OLD.hcm NEW.hcm``: a model of the layered payload of
stream formats 1-3 (payload 2) re-made for format 4's payload (payload 4).

The nets (lifting steps, prior means) and the cascade configuration are kept; what format 4
adds is rebuilt from the library's defaults: class tables normalised to exact integer
models, the band-energy envelope and its tables, the truncation segment length. This is
how the default model of hybridcodec 0.3 was made from 0.2's (``default`` as OLD: the
model embedded in the package); it prints the new model id.
"""

from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import asdict

from hybridcodec.model import DEFAULT_ENVELOPE, HybridModel, ModelConfig, load_model


def upgrade(old: HybridModel, description: str | None = None) -> HybridModel:
    """The payload-4 model with ``old``'s nets."""
    cfg = asdict(old.config)
    cfg.update(payload=4, segment_length=ModelConfig().segment_length,
               envelope=copy.deepcopy(DEFAULT_ENVELOPE))
    if description:
        cfg["description"] = description
    new = HybridModel(ModelConfig(**cfg))
    arrays = {k: v for k, v in old.integer_state().items() if not k.startswith("table_")}
    arrays.update({k: v for k, v in new.table_arrays.items()})
    new.load_integer_state(arrays)
    return new


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.upgrade_model",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("old", help="model file, or 'default' for the embedded one")
    ap.add_argument("new", help="model file to write")
    ap.add_argument("--description", help="the new model's description")
    args = ap.parse_args(argv)
    old, old_id = load_model(None if args.old == "default" else args.old)
    if old.config.payload == 4:
        print(f"{args.old}: already a format 4 model ({old_id})", file=sys.stderr)
        return 2
    new = upgrade(old, args.description or (old.config.description + f"; format 4 payload "
                                            f"(band-energy envelope, segmented layers), "
                                            f"nets of model {old_id}"))
    print(f"{args.new}: model id {new.save(args.new)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
