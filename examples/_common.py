"""Helpers shared by the examples: where the real data lives, and a model argument."""

import argparse
import os
import sys
from pathlib import Path

DATA = Path(os.environ.get("XDL_SHARED_DATA") or Path(__file__).resolve().parent.parent.parent / "shared" / "data")


def data_file(pattern: str) -> Path:
    matches = sorted(DATA.glob(pattern))
    if not matches:
        sys.exit(f"real data {pattern} not found under {DATA}; set XDL_SHARED_DATA to the data folder")
    return matches[0]


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="a .safetensors model (default: the bundled one)")
    p.add_argument("--small", action="store_true", help="a small crop, for CI")
    p.add_argument("--out", default="xdl_example_out", help="output folder")
    return p
