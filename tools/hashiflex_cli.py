"""
`hashiflex`: the command line of the flow. Thin: it parses arguments, calls the Python API
(`hashiflex.api`) and turns its errors into one-line messages with a non-zero exit.

    hashiflex import SPEC --out FILE.mlir [--calib X.npy] [quantisation options]
    hashiflex golden FILE.mlir --inputs X.npy --out Y.npz
    hashiflex compile SPEC --out DIR [--calib X.npy] [--clock-mhz 1000] [...]
    hashiflex simulate DIR --inputs X.npy [--out Y.npz] [--check] [--weights W.npz]
    hashiflex finetune DIR --data X.npy --labels y.npy --out W.npz
    hashiflex program DIR W.npz --out LOAD
    hashiflex demo

SPEC is `path/to/file.py:factory` (a function returning a float nn.Module) or the name of a
shipped example (`hashiflex examples` lists them).
"""

from __future__ import annotations

import argparse
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


def _quant_kwargs(args: argparse.Namespace) -> dict:
    return dict(
        calib=args.calib,
        input_shape=args.input_shape,
        act_bits=args.act_bits,
        exp_bits=args.exp_bits,
        prune=args.prune,
        npu_weight_bits=args.npu_weight_bits,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hashiflex",
        description="Compile trained PyTorch CNNs into hardened Po2 SystemVerilog accelerators.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
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
    p.add_argument("--clock-mhz", type=float, default=1000.0,
                   help="target clock: pipeline registers are placed to meet it (delay model of "
                        "Nangate45), and the throughput model's clock")
    p.add_argument(
        "--levels-per-stage", type=int, default=None,
        help="override the delay model: a register after every N adder levels"
    )
    p.add_argument(
        "--npu-lanes", type=int, default=0, help="NPU MAC lanes (default: keep up with the pipeline)"
    )
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
    p.add_argument(
        "--finetune",
        action="store_true",
        help="instead: compile once, then run the digits task and a fine-tuned second task "
        "(parity) on the same RTL",
    )

    sub.add_parser("examples", help="list the shipped examples")
    return parser


def run(args: argparse.Namespace) -> int:
    from hashiflex import api

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
                progress=progress,
                **_quant_kwargs(args),
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
            return api.demo(args.out, images=args.images, progress=progress)
        case "examples":
            from hashiflex.examples import EXAMPLES

            for name, example in EXAMPLES.items():
                print(f"{name}: {example.description}")
    return 0


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from hashiflex.errors import HashiflexError

    try:
        code = run(args)
    except HashiflexError as error:
        print(f"hashiflex {args.command}: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"hashiflex {args.command}: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code)


if __name__ == "__main__":
    main()
