"""The `vjepa` command line: each subcommand parses its arguments and calls one library function."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vjepa", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_make_data(commands)
    return parser


def _add_make_data(commands: argparse._SubParsersAction) -> None:
    make_data = commands.add_parser("make-data", help="write a built-in dataset to disk")
    kinds = make_data.add_subparsers(dest="kind", required=True, metavar="KIND")
    synthetic = kinds.add_parser(
        "synthetic",
        help="procedural videos with a shape (appearance) and a direction of motion label, as mp4 + CSVs",
    )
    synthetic.add_argument("out_dir", metavar="OUT_DIR", help="output folder (must be empty or absent)")
    synthetic.add_argument("--seed", type=int, default=0, help="dataset seed (same seed, same bytes)")
    synthetic.add_argument("--num-train", type=int, default=320, help="training videos")
    synthetic.add_argument("--num-val", type=int, default=96, help="validation videos")
    synthetic.add_argument("--size", type=int, default=64, help="frame side in pixels")
    synthetic.add_argument("--frames", type=int, default=16, help="frames per video")
    synthetic.add_argument("--object-size", type=int, default=26, help="object side in pixels")
    synthetic.add_argument("--overwrite", action="store_true", help="allow a non-empty OUT_DIR")
    synthetic.set_defaults(func=_make_synthetic)


def _make_synthetic(args: argparse.Namespace) -> int:
    from vjepa.data.synthetic import SyntheticSpec, write_synthetic_dataset

    spec = SyntheticSpec(num_frames=args.frames, size=args.size, object_size=args.object_size)
    files = write_synthetic_dataset(
        args.out_dir,
        seed=args.seed,
        num_train=args.num_train,
        num_val=args.num_val,
        spec=spec,
        overwrite=args.overwrite,
    )
    print(
        f"wrote {args.num_train} + {args.num_val} videos to {files.root}; indexes: "
        + ", ".join(str(p.name) for p in files.csvs.values())
    )
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    sys.exit(args.func(args) or 0)
