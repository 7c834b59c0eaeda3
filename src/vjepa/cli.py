"""The ``vjepa`` command line. Each subcommand parses its arguments and calls one library function;
errors the user can fix (a `VjepaError`: bad file, bad key, bad value) and files the system refuses (an
``OSError``) are printed as one line; any other exception is a bug and keeps its traceback.

Each subcommand imports its library code inside its function, on purpose: ``main`` sets the OpenMP
environment before torch loads (see :mod:`vjepa.threads`), so nothing at the top of this module may import
torch. The modules imported at the top import nothing heavy.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path

from vjepa.errors import VjepaError, as_out_of_memory, shown
from vjepa.threads import set_thread_env_defaults


def _add_precision_and_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="auto (default): bf16 autocast where bf16 is native and faster (CUDA compute capability >= 8.0, "
        "CPUs with AVX512-BF16 or AMX as torch uses them), fp32 elsewhere",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU intra-op threads (default: OMP_NUM_THREADS if set, else the CPUs this process may use)",
    )


def _add_models(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("models", help="list the named model sizes with parameter counts")
    p.add_argument(
        "--num-frames", "--frames", type=int, default=16, help="clip frames for the token count (default 16)"
    )
    p.add_argument("--resolution", "--size", type=int, default=224, help="clip side in pixels (default 224)")
    p.set_defaults(func=_models)


def _models(args: argparse.Namespace) -> int:
    # lazy on purpose: torch loads only after main() sets the thread environment
    from vjepa.summary import print_model_table

    print_model_table(num_frames=args.num_frames, resolution=args.resolution)
    return 0


def _add_convert(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "convert",
        help="convert an official V-JEPA / V-JEPA 2 checkpoint or a Hugging Face V-JEPA 2 folder to our format",
        description="Read an official pretraining checkpoint (V-JEPA .pth.tar, V-JEPA 2 .pt) or a Hugging Face "
        "VJEPA2Model / VJEPA2ForVideoClassification folder and write our checkpoint folder (a classifier's probe "
        "goes to OUT_DIR/probe). Every key is accounted for.",
    )
    p.add_argument("checkpoint", help="official file (e.g. vitl16.pth.tar, vitl.pt) or Hugging Face folder")
    p.add_argument("out_dir", help="folder to write model.safetensors and config.json into")
    p.add_argument(
        "--num-heads", type=int, default=None, help="head count, for sizes that are not named ones"
    )
    p.add_argument(
        "--positions",
        choices=["auto", "sincos", "rope"],
        default="auto",
        help="official files: sincos (V-JEPA), rope (V-JEPA 2, also when the file holds an unused pos_embed); "
        "auto: rope when the encoder has no pos_embed",
    )
    p.add_argument(
        "--pred-num-heads", type=int, default=None, help="predictor heads (default 12 for V-JEPA 2)"
    )
    p.add_argument(
        "--resolution",
        "--img-size",
        type=int,
        default=None,
        help="V-JEPA 2 files: native clip side to record (default 256)",
    )
    p.add_argument(
        "--rope-grid",
        choices=["clip", "config"],
        default="clip",
        help="Hugging Face folders: read RoPE positions on the clip's grid (official) or on the config's "
        "resolution (transformers)",
    )
    p.set_defaults(func=_convert)


def _convert(args: argparse.Namespace) -> int:
    # lazy on purpose: torch loads only after main() sets the thread environment
    from vjepa.checkpoint import convert_official
    from vjepa.interop.hf import convert_hf, is_hf_folder

    if Path(args.checkpoint).is_dir() and is_hf_folder(args.checkpoint):
        for out in convert_hf(args.checkpoint, args.out_dir, rope_grid=args.rope_grid):
            print(f"wrote {out}")
        return 0
    out = convert_official(
        args.checkpoint,
        args.out_dir,
        num_heads=args.num_heads,
        positions=args.positions,
        pred_num_heads=args.pred_num_heads,
        resolution=args.resolution,
    )
    print(f"wrote {out}")
    return 0


def _add_export(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "export",
        help="write a V-JEPA 2 checkpoint (and probe) as a Hugging Face VJEPA2Model / classifier folder",
        description="Write config.json + model.safetensors that transformers' VJEPA2Model.from_pretrained (with "
        "--probe: VJEPA2ForVideoClassification.from_pretrained) loads with every key, computing what vjepa "
        "computes. transformers is not needed for this.",
    )
    p.add_argument(
        "checkpoint", help="our checkpoint folder, an official V-JEPA 2 file or a Hugging Face folder"
    )
    p.add_argument("out_dir", help="folder to write the Hugging Face files into")
    p.add_argument("--hf", action="store_true", required=True, help="the Hugging Face transformers format")
    p.add_argument(
        "--probe", default=None, help="probe folder or official probe file for the classifier head"
    )
    p.add_argument("--probe-head", type=int, default=None, help="which probe of an official V-JEPA 2 file")
    p.add_argument("--which", choices=["target_encoder", "encoder"], default="target_encoder")
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    # lazy on purpose: torch loads only after main() sets the thread environment
    from vjepa.interop.hf_export import export_hf

    out = export_hf(
        args.checkpoint, args.out_dir, probe=args.probe, probe_head=args.probe_head, which=args.which
    )
    print(f"wrote {out} ({'VJEPA2ForVideoClassification' if args.probe else 'VJEPA2Model'})")
    return 0


def _add_encode(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "encode", help="build (or load) an encoder and encode a generated clip; prints shapes and time"
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", default="vit_tiny", help="named size to build (default vit_tiny)")
    src.add_argument("--checkpoint", default=None, help="official file or our checkpoint folder to load")
    p.add_argument("--which", choices=["target_encoder", "encoder"], default="target_encoder")
    p.add_argument("--num-heads", type=int, default=None)
    p.add_argument("--num-frames", "--frames", type=int, default=16)
    p.add_argument("--resolution", "--size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    _add_precision_and_threads(p)
    p.set_defaults(func=_encode)


def _encode(args: argparse.Namespace) -> int:
    # lazy on purpose: torch loads only after main() sets the thread environment
    from vjepa.summary import encode_demo_clip

    encode_demo_clip(
        model=args.model,
        checkpoint=args.checkpoint,
        which=args.which,
        num_heads=args.num_heads,
        num_frames=args.num_frames,
        resolution=args.resolution,
        batch_size=args.batch_size,
        seed=args.seed,
        precision=args.precision,
        threads=args.threads,
    )
    return 0


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
    synthetic.add_argument("--resolution", "--size", type=int, default=64, help="frame side in pixels")
    synthetic.add_argument("--num-frames", "--frames", type=int, default=16, help="frames per video")
    synthetic.add_argument("--object-size", type=int, default=26, help="object side in pixels")
    synthetic.add_argument(
        "--hold",
        type=int,
        default=1,
        help="the object moves every HOLD frames (2: no motion inside a tubelet)",
    )
    synthetic.add_argument(
        "--objects", type=int, default=1, help="objects per video, moving together (default 1)"
    )
    synthetic.add_argument(
        "--speeds",
        type=int,
        nargs="+",
        default=[3, 4],
        help="speeds in pixels per frame, one drawn per video",
    )
    synthetic.add_argument("--overwrite", action="store_true", help="allow a non-empty OUT_DIR")
    synthetic.set_defaults(func=_make_synthetic)


def _make_synthetic(args: argparse.Namespace) -> int:
    # lazy on purpose: torch loads only after main() sets the thread environment
    from vjepa.data.synthetic import SyntheticSpec, write_synthetic_dataset

    spec = SyntheticSpec(
        num_frames=args.num_frames,
        resolution=args.resolution,
        object_size=args.object_size,
        hold=args.hold,
        num_objects=args.objects,
        speeds=tuple(args.speeds),
    )
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


def _add_pretrain(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "pretrain",
        help="V-JEPA pretraining (single process, or every process of torchrun)",
        description="Pretrain a V-JEPA encoder. Run under 'torchrun --nproc_per_node=N -m vjepa pretrain ...' "
        "for DDP on N processes (multi-node with torchrun's rendezvous flags).",
    )
    p.add_argument(
        "config",
        nargs="?",
        default=None,
        help="a YAML file or a shipped recipe (vitl16, vith16, vith16_384, tiny_cpu); optional with --resume",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optimization.lr=1e-3 (repeatable)",
    )
    p.add_argument("--run-dir", default=None, help="run directory (default runs/<recipe name>)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --run-dir (starts a new one if the directory is missing or empty)",
    )
    p.set_defaults(func=_pretrain)


def _pretrain(args: argparse.Namespace) -> int:
    # lazy on purpose: torch loads only after main() sets the thread environment
    from vjepa.data.errors import TooManyFailuresError
    from vjepa.data.workers import WorkerDied
    from vjepa.errors import OutOfMemory
    from vjepa.pretrain.config import load_run_config
    from vjepa.pretrain.loop import TrainingDiverged, pretrain

    config, run_dir = load_run_config(args.config, args.overrides, args.run_dir, args.resume)
    try:
        pretrain(config, run_dir, resume=args.resume)
    except (TrainingDiverged, TooManyFailuresError, WorkerDied, OutOfMemory) as err:
        # the run started and stopped on the way; the message names the last checkpoint
        print(f"vjepa pretrain: stopped: {err}", file=sys.stderr)
        return 1
    return 0


def _add_eval(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "eval", help="train and score probes (attentive, linear, k-NN) on a frozen encoder; write metrics"
    )
    p.add_argument("config", help="eval YAML, or the name of a shipped recipe (e.g. synthetic_motion)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)"
    )
    p.set_defaults(func=_eval)


def _eval(args: argparse.Namespace) -> int:
    # lazy on purpose: torch loads only after main() sets the thread environment
    from vjepa.probe.config import load_eval_config
    from vjepa.probe.loop import run_eval
    from vjepa.probe.selection import ProbeNotTrainedError

    config, path = load_eval_config(args.config, args.set)
    try:
        run_eval(config, path)
    except ProbeNotTrainedError as err:  # the outputs are written; the result is not a number
        print(f"vjepa eval: not trained: {err}", file=sys.stderr)
        return 1
    return 0


def _add_extract(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "extract", help="videos or images -> frozen-encoder features (tokens or pooled) on disk"
    )
    p.add_argument(
        "inputs", nargs="+", help="video/image files, folders (searched recursively), CSV indexes, .txt lists"
    )
    p.add_argument("--checkpoint", required=True, help="official .pth.tar or our checkpoint folder")
    p.add_argument(
        "--encoder",
        required=True,
        choices=["target_encoder", "encoder"],
        help="target_encoder (EMA weights, what the paper evaluates) or encoder (the context encoder)",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--kind", choices=["video", "image"], default="video", help="what the inputs are")
    p.add_argument(
        "--num-frames", "--frames", type=int, default=16, help="frames per clip (images: repeats); default 16"
    )
    p.add_argument("--frame-step", type=int, default=4, help="source frames between clip frames; default 4")
    p.add_argument(
        "--stride", type=int, default=None, help="frames between window starts (default: no overlap)"
    )
    p.add_argument("--resolution", type=int, default=224, help="clip side in pixels; default 224")
    p.add_argument("--crop", choices=["center", "full"], default="center", help="centre crop or whole frame")
    p.add_argument("--pooled", action="store_true", help="write the mean over tokens instead of every token")
    p.add_argument("--format", choices=["safetensors", "npy"], default="safetensors")
    p.add_argument("--batch-size", type=int, default=8, help="clips per encoder forward")
    _add_precision_and_threads(p)
    p.add_argument("--num-workers", type=int, default=0, help="decoding worker processes")
    p.add_argument("--num-heads", type=int, default=None, help="head count for unnamed official sizes")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.set_defaults(func=_extract)


def _extract(args: argparse.Namespace) -> int:
    # lazy on purpose: torch loads only after main() sets the thread environment
    from vjepa.extract import ExtractSpec, run_extract

    spec = ExtractSpec(
        kind=args.kind,
        num_frames=args.num_frames,
        frame_step=args.frame_step,
        stride=args.stride,
        resolution=args.resolution,
        crop=args.crop,
        pooled=args.pooled,
        format=args.format,
        batch_size=args.batch_size,
        precision=args.precision,
        num_workers=args.num_workers,
    )
    report = run_extract(
        args.inputs,
        args.out,
        checkpoint=args.checkpoint,
        which=args.encoder,
        spec=spec,
        num_heads=args.num_heads,
        device=args.device,
        threads=args.threads,
    )
    return 1 if report.failed else 0


def _add_demo(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "demo",
        help="V-JEPA against its ablations and a random init on a CPU in ~15 minutes: data, pretraining, "
        "probes, report.md",
        description="Generate synthetic videos, pretrain a small V-JEPA encoder, the anti-collapse objectives "
        "(variance-covariance, SIGReg) and the ablations (pixel targets, random-tube masks) with several seeds at "
        "one compute budget, probe them, their random init and a pixel baseline on the motion and appearance "
        "labels, and write report.md with the table, the claims checked on it, figures and the commands.",
    )
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument(
        "--budget-minutes",
        type=float,
        default=None,
        help="size the pretraining runs from a timed calibration run to fit this wall-time budget (default: "
        "the fixed step count measured to fit 15 minutes on a 2-core CPU)",
    )
    p.add_argument("--seeds", type=int, default=None, help="pretraining (and probe) seeds (default 3)")
    p.add_argument("--steps", type=int, default=None, help="pretraining steps per run (overrides the budget)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="single-threaded worker processes running jobs side by side (default: usable CPUs, at most 4)",
    )
    p.add_argument(
        "--no-objectives",
        action="store_true",
        help="skip the variance-covariance and SIGReg variants (saves 40%% of the pretraining)",
    )
    p.add_argument(
        "--all-objectives",
        action="store_true",
        help="also pretrain LeJEPA (online targets + SIGReg, no EMA) and SALT (a student of the frozen "
        "pixel-target run; it pretrains after it)",
    )
    p.add_argument(
        "--quick", action="store_true", help="a smoke run of about a minute (tiny data, few steps)"
    )
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    # lazy on purpose: torch loads only after main() sets the thread environment
    from vjepa.demo.plan import DemoConfig
    from vjepa.demo.run import run_demo

    cfg = DemoConfig.quick_config(args.out) if args.quick else DemoConfig(out_dir=args.out)
    changes: dict = {"objectives": not args.no_objectives, "extra_objectives": args.all_objectives}
    if args.budget_minutes is not None:  # size the pretraining from a measured step time instead
        changes.update(budget_minutes=args.budget_minutes, pretrain_steps=None)
    if args.steps is not None:
        changes["pretrain_steps"] = args.steps
    if args.seeds is not None:
        changes["seeds"] = args.seeds
    if args.workers is not None:
        changes["workers"] = args.workers
    run_demo(dataclasses.replace(cfg, **changes))
    return 0


def _add_masks(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("masks", help="draw what a pretraining config's masks hide over a video's frames")
    p.add_argument(
        "config", nargs="?", default="tiny_cpu", help="pretraining recipe or YAML (default tiny_cpu)"
    )
    p.add_argument("--video", default=None, help="any video file (default: a built-in synthetic video)")
    p.add_argument("--out", default="masks.png", help="PNG to write (default masks.png)")
    p.add_argument("--gif", action="store_true", help="also write one animated GIF per mask setting")
    p.add_argument("--seed", type=int, default=0, help="mask seed")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)"
    )
    p.set_defaults(func=_masks)


def _masks(args: argparse.Namespace) -> int:
    # lazy on purpose: torch loads only after main() sets the thread environment
    from vjepa.mask_viz import draw_config_masks
    from vjepa.pretrain.config import load_pretrain_config

    config = load_pretrain_config(args.config, args.set)
    for path in draw_config_masks(
        config, args.config, args.out, video=args.video, gif=args.gif, seed=args.seed
    ):
        print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vjepa", description="V-JEPA video encoders: pretrain, evaluate, extract."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        _add_demo,
        _add_pretrain,
        _add_eval,
        _add_extract,
        _add_make_data,
        _add_masks,
        _add_models,
        _add_convert,
        _add_export,
        _add_encode,
    ):
        add(commands)
    return parser


def _known_runtime_error(err: RuntimeError) -> VjepaError | None:
    """torch's RuntimeError for a loader worker that died or for memory that ran out, as a one-line error that
    says what to change; None for anything else (a bug keeps its traceback)."""
    from vjepa.data.workers import as_worker_death

    device = "cuda" if type(err).__name__ == "OutOfMemoryError" else "cpu"
    tips = ["use a smaller batch (--batch-size, optimization.batch_size)"]
    return as_worker_death(err) or as_out_of_memory(err, device, tips)


def main(argv: list[str] | None = None) -> None:
    set_thread_env_defaults()  # before anything imports torch: OMP_WAIT_POLICY is read when torch loads
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        code = func(args)
    except VjepaError as err:  # a problem the user can fix: one clear line (a bug keeps its traceback)
        code = err.exit_code  # 2, or 128 + N for a run stopped by signal N after its checkpoint
        print(f"vjepa {args.command}: {'error: ' if code == 2 else ''}{err}", file=sys.stderr)
    except OSError as err:  # a file or folder the system refused (missing, no permission, disk full, ...)
        print(f"vjepa {args.command}: error: {_os_error(err)}", file=sys.stderr)
        code = 2
    except RuntimeError as err:  # torch's report of a dead loader worker or of memory that ran out, if so
        known = _known_runtime_error(err)
        if known is None:
            raise
        print(f"vjepa {args.command}: error: {known}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print(f"vjepa {args.command}: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)


def _os_error(err: OSError) -> str:
    """``<file>: <cause>`` without Python's ``[Errno N]`` prefix."""
    cause = err.strerror or str(err) or type(err).__name__
    return f"{shown(err.filename)}: {cause}" if err.filename is not None else cause
