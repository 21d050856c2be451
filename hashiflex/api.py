"""
The Python API of the flow, with the same shape as the `hashiflex` command:

    module, quantized = import_model("tiny_cnn")            # torch -> po2 IR
    result = golden(module, images)                          # golden model
    design = compile("tiny_cnn", "out/tiny")                 # po2 -> hw -> SystemVerilog
    sim = simulate("out/tiny", images, check=True)           # Verilator, bit-exact check

Every user-facing failure raises a `hashiflex.errors.HashiflexError` with one line that
names the file, layer or option at fault.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from hashiflex.errors import DesignError, InputError, ModelError, ToolchainError
from hashiflex.progress import QUIET, Progress


# ---------------------------------------------------------------------------
# Models and data
# ---------------------------------------------------------------------------


@dataclass
class LoadedModel:
    name: str
    module: "object"  # torch.nn.Module
    input_shape: tuple[int, int, int]
    example: "object | None" = None  # examples.ExampleSpec


def parse_shape(text: str | tuple | None) -> tuple[int, int, int] | None:
    if text is None or isinstance(text, tuple):
        return text
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(","))
    except ValueError:
        raise InputError(f"--input-shape '{text}' is not C,H,W")
    if len(dims) != 3 or min(dims) < 1:
        raise InputError(f"--input-shape '{text}' must be three positive numbers C,H,W")
    return dims  # type: ignore[return-value]


def load_model(spec: str, input_shape: tuple[int, int, int] | None = None) -> LoadedModel:
    """`path/to/file.py:factory` or the name of a shipped example."""
    import torch

    from hashiflex.examples import EXAMPLES, load_example

    if spec in EXAMPLES:
        example = EXAMPLES[spec]
        shape = input_shape or example.input_shape
        return LoadedModel(spec, load_example(spec), tuple(shape), example)
    if ":" not in spec:
        raise InputError(
            f"'{spec}' is neither a shipped example ({', '.join(EXAMPLES)}) nor "
            "path/to/file.py:factory"
        )
    path_text, factory_name = spec.rsplit(":", 1)
    path = Path(path_text)
    if not path.is_file():
        raise InputError(f"model file '{path}' does not exist")
    module_spec = importlib.util.spec_from_file_location(f"hashiflex_user_{path.stem}", path)
    assert module_spec is not None and module_spec.loader is not None
    user_module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(user_module)
    except Exception as error:  # the user's code: report, don't trace back
        raise ModelError(f"importing '{path}' failed: {type(error).__name__}: {error}")
    factory = getattr(user_module, factory_name, None)
    if not callable(factory):
        raise InputError(f"'{path}' has no function '{factory_name}'")
    try:
        model = factory()
    except Exception as error:
        raise ModelError(f"{spec}() failed: {type(error).__name__}: {error}")
    if not isinstance(model, torch.nn.Module):
        raise ModelError(f"{spec}() returned a {type(model).__name__}, not a torch nn.Module")
    if input_shape is None:
        input_shape = getattr(model, "input_shape", None) or getattr(user_module, "INPUT_SHAPE", None)
    return LoadedModel(factory_name, model.eval(), tuple(input_shape) if input_shape else None)


def load_npy(path: Path | str, what: str) -> np.ndarray:
    """A .npy array, or a one-line InputError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file '{path}' does not exist")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as error:
        raise InputError(f"{what} file '{path}' is not a .npy array: {error}")


def load_images(path: Path | str, what: str, input_shape: tuple[int, int, int] | None) -> np.ndarray:
    """A float32 NxCxHxW .npy, checked against the network's input shape."""
    return check_images(load_npy(path, what), f"{what} '{path}'", input_shape)


def check_images(array: np.ndarray, what: str, input_shape: tuple[int, int, int] | None) -> np.ndarray:
    """A float NxCxHxW array of images of `input_shape` (if known), as float32."""
    if array.ndim != 4:
        raise InputError(
            f"{what} has shape {list(array.shape)}; expected float32 NxCxHxW (4-D)"
        )
    if input_shape is not None and tuple(array.shape[1:]) != tuple(input_shape):
        raise InputError(
            f"{what} has images of shape {list(array.shape[1:])}; the network takes "
            f"{list(input_shape)} (CxHxW)"
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"{what} holds {array.dtype}, expected float32 images")
    if array.shape[0] == 0:
        raise InputError(f"{what} holds no images")
    if np.isnan(array).any():
        raise InputError(f"{what} holds NaN values")
    return array.astype(np.float32)


def default_calibration(loaded: LoadedModel, progress: Progress) -> np.ndarray:
    """The example's own training images, else uniform random images in [0, 1)."""
    if loaded.input_shape is None:
        raise InputError(
            "the input shape is unknown: give --input-shape C,H,W or --calib X.npy"
        )
    if loaded.example is not None and loaded.name in ("tiny_cnn", "mobilenetv2_digits"):
        from hashiflex.examples.digits import load_digits_split

        x_train, _, _, _ = load_digits_split(size=loaded.input_shape[1])
        return x_train[:256].numpy()
    progress.say("no --calib given: calibrating on 64 uniform random images in [0, 1)")
    rng = np.random.default_rng(0)
    return rng.random((64, *loaded.input_shape), dtype=np.float32)


# ---------------------------------------------------------------------------
# Import and golden model
# ---------------------------------------------------------------------------


def import_model(
    spec: str,
    *,
    calib: Path | str | np.ndarray | None = None,
    input_shape: str | tuple | None = None,
    act_bits: int = 8,
    exp_bits: int = 3,
    prune: float = 0.0,
    npu_weight_bits: int = 8,
    ptq: str = "adaround",
    progress: Progress = QUIET,
):
    """Quantise a model and build its layer-level po2 IR; returns (ModuleOp, QuantizedModel).

    A SPEC ending in .pt is a `hashiflex train` checkpoint: its network is rebuilt exactly
    (hashiflex/train.py) and the quantisation options are the ones it was trained with.
    """
    import torch

    from hashiflex.frontend import quant
    from hashiflex.frontend.importer import ImportError_, graph_to_po2
    from xdsl.utils.exceptions import DiagnosticException

    check_quant_options(act_bits, exp_bits, prune, npu_weight_bits)
    from hashiflex.frontend.ptq import PTQ_METHODS

    if ptq not in PTQ_METHODS:
        raise InputError(f"--ptq must be one of {', '.join(PTQ_METHODS)}, got '{ptq}'")
    from hashiflex import train

    if train.is_checkpoint_spec(spec):
        given = dict(act_bits=act_bits, exp_bits=exp_bits, prune=prune, weight_bits=npu_weight_bits)
        with progress.step(f"loading the checkpoint {spec}"):
            name, quantized, record = train.load_checkpoint(spec)
        clash = [k for k, v in given.items() if v != getattr(quant.QuantOptions(), k)
                 and v != record["options"].get(k)]
        if clash:
            raise InputError(f"the checkpoint '{spec}' was trained with {clash[0]}="
                             f"{record['options'][clash[0]]}; its quantisation options are fixed")
        module = graph_to_po2(quantized.graph, name)
        check_int64_range(module)
        return module, quantized
    loaded = load_model(spec, parse_shape(input_shape))
    if isinstance(calib, np.ndarray):
        calib_images = check_images(calib, "calibration data", loaded.input_shape)
    elif calib is not None:
        calib_images = load_images(calib, "calibration data", loaded.input_shape)
    else:
        calib_images = None
    if calib_images is not None and not np.isfinite(calib_images).all():
        raise InputError("calibration data holds NaN or infinite values")
    if loaded.input_shape is None and calib_images is not None:
        loaded.input_shape = tuple(calib_images.shape[1:])
    defaults = (act_bits, exp_bits, prune, npu_weight_bits, ptq) == (8, 3, 0.0, 8, "adaround")
    options = dict(act_bits=act_bits, exp_bits=exp_bits, prune=prune, weight_bits=npu_weight_bits,
                   ptq=ptq)
    try:
        # a float -> int64 cast of an out-of-range bias is refused by check_int64_range below
        with progress.step(f"quantising {loaded.name}"), np.errstate(invalid="ignore"):
            example = loaded.example
            if (
                example is not None
                and calib_images is None
                and defaults
                and example.qat_checkpoint is not None
                and example.qat_checkpoint.exists()
            ):
                from hashiflex.examples import load_quantized

                progress.say(f"using the shipped QAT checkpoint of {loaded.name}")
                quantized = load_quantized(loaded.name)
            else:
                if calib_images is None:
                    calib_images = default_calibration(loaded, progress)
                quantized = quant.quantize_ptq(
                    loaded.module, torch.from_numpy(calib_images), **options
                )  # ptq="adaround": frontend/ptq.py
        with progress.step("building po2 IR"):
            module = graph_to_po2(quantized.graph, loaded.name)
    except (quant.UnsupportedModelError, quant.ModelShapeError, ImportError_) as error:
        raise ModelError(str(error))
    except ValueError as error:  # e.g. the float model overflows to inf on the calibration data
        raise ModelError(f"quantising {loaded.name} failed: {error}")
    except DiagnosticException as error:  # a po2 op does not verify (e.g. a width beyond 64 bits)
        raise ModelError(f"{loaded.name}: {str(error).strip().splitlines()[0]}")
    check_int64_range(module)
    return module, quantized


def check_int64_range(module) -> None:
    """
    The golden model (and the po2 interpreter, the frontend's integer executor) compute in
    int64: refuse a network whose exact accumulators could leave it (e.g. --exp-bits 6 gives
    weight shifts up to 63), instead of a wrapped, silently wrong reference or an overflow.
    """
    from hashiflex.dialects import po2
    from hashiflex.golden.semantics import decode_weights

    limit = 1 << 62
    for op in module.walk():
        layer = getattr(getattr(op, "layer", None), "data", op.name)
        if isinstance(op, po2.Conv2dOp):
            fmt = op.input.type.fmt
            x_max = max(abs(fmt.lo), abs(fmt.hi))
            weights = decode_weights(op.weight_codes()).astype(object)
            w_sum = np.abs(weights).reshape(weights.shape[0], -1).sum(axis=1)
            bias = po2._array_prop(op, "bias")
            shifts = po2._array_prop(op, "shift")
            worst = max(x_max * int(w) + abs(int(b)) + (1 << max(int(r), 0))
                        for w, b, r in zip(w_sum, bias, shifts))
        elif isinstance(op, po2.AvgPoolOp):
            fmt = op.input.type.fmt
            _, h, w = op.input.type.dims
            worst = h * w * max(abs(fmt.lo), abs(fmt.hi)) * op.multiplier.value.data
            worst += 1 << max(op.shift.value.data + fmt.frac - op.output.type.fmt.frac, 0)
        else:
            continue
        if worst >= limit:
            raise ModelError(
                f"layer '{layer}': its exact accumulator needs {int(worst).bit_length() + 1} "
                "bits, beyond the 63 the golden model checks; use fewer --exp-bits or --act-bits"
            )


def check_quant_options(act_bits: int, exp_bits: int, prune: float, npu_weight_bits: int) -> None:
    """Quantisation options in their supported ranges (one-line errors, before any work)."""
    if not 2 <= act_bits <= 32:
        raise InputError(f"--act-bits must be in 2..32, got {act_bits}")
    if not 1 <= exp_bits <= 6:
        raise InputError(f"--exp-bits must be in 1..6, got {exp_bits}")
    if not 0.0 <= prune < 1.0:
        raise InputError(f"--prune must be in [0, 1), got {prune}")
    if not 2 <= npu_weight_bits <= 32:
        raise InputError(f"--npu-weight-bits must be in 2..32, got {npu_weight_bits}")


def golden(module, images: np.ndarray, weights: dict | None = None):
    """Run the golden model on float images; returns a GoldenResult (logits, classes)."""
    from hashiflex.golden import model as golden_model

    npu_w = None if weights is None else weights["weights"]
    npu_b = None if weights is None else weights["bias"]
    try:
        return golden_model.run(module, images, npu_w, npu_b)
    except golden_model.GoldenError as error:
        raise InputError(str(error))


def print_ir(module, path: Path | str) -> None:
    """Write IR text, atomically: the file appears complete or not at all."""
    from xdsl.printer import Printer

    with atomic_file(path) as stream:
        Printer(stream=stream).print_op(module)
        stream.write("\n")


def parse_ir(path: Path | str):
    """Parse and verify an IR file, reporting errors as one-line InputErrors."""
    from xdsl.parser import Parser
    from xdsl.utils.exceptions import DiagnosticException, ParseError

    from hashiflex.tools.registry import make_context

    path = Path(path)
    if not path.is_file():
        raise InputError(f"IR file '{path}' does not exist")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise InputError(f"'{path}' is not an IR text file (it is not UTF-8)")
    try:
        module = Parser(make_context(), text, str(path)).parse_module()
        module.verify()
    except ParseError as error:
        raise InputError(f"'{path}' does not parse: {str(error).strip().splitlines()[-1].strip()}")
    except DiagnosticException as error:
        raise InputError(f"'{path}' does not verify: {str(error).strip().splitlines()[0]}")
    return module


def import_command(spec: str, out: Path, *, progress: Progress = QUIET, **options) -> None:
    module, _ = import_model(spec, progress=progress, **options)
    print_ir(module, out)
    progress.say(f"wrote {out}")


def load_weights(path: Path | str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"weights file '{path}' does not exist")
    try:
        data = np.load(path, allow_pickle=False)
        return {"weights": data["weights"].astype(np.int64), "bias": data["bias"].astype(np.int64)}
    except (KeyError, ValueError, OSError) as error:
        raise InputError(f"'{path}' is not an NPU weights file (arrays 'weights', 'bias'): {error}")


def golden_command(ir: Path, inputs: Path, out: Path, *, weights: Path | None = None, progress: Progress = QUIET) -> None:
    from hashiflex.golden.model import GoldenError, input_type

    module = parse_ir(ir)
    try:
        in_t = input_type(module)
    except GoldenError as error:
        raise InputError(f"'{ir}' is not a layer-level po2 network: {error}")
    images = load_images(inputs, "inputs", in_t.dims)
    npu = load_weights(weights) if weights is not None else None
    if npu is not None:
        check_npu_weights(module, npu)
    with progress.step(f"golden model on {len(images)} images"):
        result = golden(module, images, npu)
    with atomic_file(out, binary=True) as stream:
        np.savez(stream, logits=result.logits, classes=result.classes, logits_frac=result.logits_frac)
    progress.say(f"wrote {out}")


def check_npu_weights(module, npu: dict) -> None:
    """Weights must fit the NPU built into the design: shape and number range."""
    from hashiflex.golden.semantics import type_range

    op = _npu_op(module)
    if op is None:
        raise DesignError("the design has no NPU classifier")
    n, k = op.weights.get_shape()
    w, b = npu["weights"], npu["bias"]
    if w.ndim != 2 or w.shape[1] != k or w.shape[0] > n:
        raise InputError(
            f"NPU weights have shape {list(w.shape)}; the NPU takes [classes <= {n}, features {k}]"
        )
    if b.shape != (w.shape[0],):
        raise InputError(f"NPU bias has shape {list(b.shape)}; expected [{w.shape[0]}]")
    w_lo, w_hi = type_range(op.weight_bits.value.data, True)
    b_lo, b_hi = type_range(op.bias_bits.value.data, True)
    if w.min() < w_lo or w.max() > w_hi:
        raise InputError(
            f"an NPU weight lies outside the {op.weight_bits.value.data}-bit range [{w_lo}, {w_hi}]"
        )
    if b.min() < b_lo or b.max() > b_hi:
        raise InputError(
            f"an NPU bias lies outside the {op.bias_bits.value.data}-bit range [{b_lo}, {b_hi}]"
        )


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------


@contextmanager
def atomic_file(path: Path | str, binary: bool = False) -> Iterator[io.IOBase]:
    """Write to a temporary file beside `path` and move it into place only on success."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"'{path}' is a directory, expected a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as stream:
            yield stream
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextmanager
def atomic_dir(path: Path | str) -> Iterator[Path]:
    """Build a directory beside `path`; replace `path` with it only when complete."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"'{path}' exists and is not a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    os.chmod(tmp, 0o755)
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------
# Compile
# ---------------------------------------------------------------------------

DESIGN_FORMAT = "hashiflex-design/1"


@dataclass
class Design:
    """A compiled design directory and what `design.json` says of it."""

    path: Path
    manifest: dict

    @property
    def report(self) -> dict:
        return json.loads((self.path / "report.json").read_text())

    def file(self, key: str) -> Path:
        return self.path / self.manifest["files"][key]


def lower_to_hw(module, *, levels_per_stage: int = 2, npu_lanes: int = 0, progress: Progress = QUIET):
    """Run the hardening pipeline in place: unroll, canonicalise, infer widths, to hw."""
    from hashiflex.passes.po2_canonicalize import Po2CanonicalizePass
    from hashiflex.passes.po2_infer_widths import Po2InferWidthsPass
    from hashiflex.passes.po2_to_hw import Po2ToHwPass
    from hashiflex.passes.po2_unroll import Po2UnrollPass
    from hashiflex.tools.registry import make_context
    from xdsl.utils.exceptions import DiagnosticException

    ctx = make_context()
    pipeline = [
        Po2UnrollPass(),
        Po2CanonicalizePass(),
        Po2InferWidthsPass(),
        Po2ToHwPass(levels_per_stage=levels_per_stage, npu_lanes=npu_lanes),
    ]
    for pass_ in pipeline:
        with progress.step(f"pass {pass_.name}"):
            try:
                pass_.apply(ctx, module)
            except DiagnosticException as error:
                raise ModelError(f"{pass_.name}: {str(error).strip().splitlines()[0]}")
    return module


def _npu_op(module):
    from hashiflex.dialects import po2

    ops = [op for op in module.walk() if isinstance(op, po2.NpuLinearOp)]
    return ops[0] if ops else None


def compile(
    spec: str,
    out: Path | str,
    *,
    clock_mhz: float = 1000.0,
    levels_per_stage: int = 2,
    npu_lanes: int = 0,
    progress: Progress = QUIET,
    **quant_options,
) -> Design:
    """Compile a model into DIR: po2 IR, hw IR, SystemVerilog, parameters and report.json."""
    from hashiflex.flow import lower_and_emit
    from hashiflex.golden.model import find_network, input_type

    if clock_mhz <= 0:
        raise InputError(f"--clock-mhz must be positive, got {clock_mhz}")
    if npu_lanes < 0 or levels_per_stage < 1:
        raise InputError("--npu-lanes must be >= 0 and --levels-per-stage >= 1")
    out = Path(out)
    module, quantized = import_model(spec, progress=progress, **quant_options)
    name = find_network(module).sym_name.data
    in_t = input_type(module)
    npu = _npu_op(module)
    if npu is None:
        raise ModelError("the model has no final Linear classifier (the NPU); nothing to classify with")
    with atomic_dir(out) as tmp:
        print_ir(module, tmp / "model.po2.mlir")
        np.savez(
            tmp / "params.npz",
            npu_weights=npu.weight_matrix(),
            npu_bias=np.asarray(list(npu.bias.iter_values()), dtype=np.int64),
        )
        # Layer by layer: unroll, lower, print hw IR, emit rtl/<module>.sv, drop (flow.py);
        # byte-identical to lower_to_hw + print_ir + emit_sv_files, one layer's IR at a time.
        with progress.step("lowering to hw and emitting SystemVerilog, layer by layer"):
            flow = lower_and_emit(module, tmp, hw_file="model.hw.mlir", rtl_dir="rtl",
                                  levels_per_stage=levels_per_stage, npu_lanes=npu_lanes,
                                  progress=progress)
        progress.say("phases: " + ", ".join(f"{k} {v:.1f} s" for k, v in flow.phases.items())
                     + f"; {flow.hw_ops} hw ops in {flow.modules} modules")
        hw_report = flow.hw_report
        top = hw_report["top"]["module"]
        sv_files = flow.sv_files
        report = build_report(hw_report, clock_mhz)
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        ports = flow.top_ports
        manifest = {
            "format": DESIGN_FORMAT,
            "name": name,
            "top": top,
            "input_shape": list(in_t.dims),
            "input_format": {"bits": in_t.fmt.bits, "signed": in_t.fmt.signed, "frac": in_t.fmt.frac},
            "classes": npu.weights.get_shape()[0],
            "features": npu.weights.get_shape()[1],
            "logit_bits": npu.output.type.fmt.bits,
            "logits_frac": npu.output.type.fmt.frac,
            "npu_weight_bits": npu.weight_bits.value.data,
            "npu_bias_bits": npu.bias_bits.value.data,
            "ports": ports,
            "files": {
                "sv": [f"rtl/{f.name}" for f in sv_files],
                "po2": "model.po2.mlir",
                "hw": "model.hw.mlir",
                "params": "params.npz",
                "report": "report.json",
            },
        }
        (tmp / "design.json").write_text(json.dumps(manifest, indent=2) + "\n")
    summary = report
    progress.say(
        f"wrote {out}: {summary['cycles_per_image']} cycles/image, "
        f"{summary['images_per_second']:.3g} images/s at {clock_mhz:g} MHz, "
        f"{summary['adders']} adders, {summary['register_bits']} register bits"
    )
    return Design(out, manifest)


def _top_ports(module, top: str) -> list[dict]:
    """The top's ports as the SystemVerilog names them, in order (for the harness)."""
    from xdsl.dialects import hw

    from hashiflex.backends.verilator import ports_of

    for op in module.ops:
        if isinstance(op, hw.HWModuleOp) and op.sym_name.data == top:
            return [{"name": p.name, "width": p.width, "dir": p.direction} for p in ports_of(op)]
    raise DesignError(f"no top module '{top}' in the hw IR")


def build_report(hw_report: dict, clock_mhz: float) -> dict:
    """report.json: throughput model, totals and one entry per layer."""
    top = hw_report["top"]
    layers = hw_report["layers"]
    npu = next((l for l in layers if l.get("kind") == "npu"), None)
    pipeline_cycles = top["cycles_per_image"]
    npu_cycles = npu.get("cycles_per_image", 0) if npu else 0
    cycles = max(pipeline_cycles, npu_cycles)
    totals = hw_report["totals"]
    return {
        "cycles_per_image": cycles,
        "pipeline_cycles_per_image": pipeline_cycles,
        "npu_cycles_per_image": npu_cycles,
        "npu_is_bottleneck": npu_cycles > pipeline_cycles,
        "latency_cycles": top.get("latency_cycles", 0),
        "clock_mhz": clock_mhz,
        "images_per_second": clock_mhz * 1e6 / cycles,
        "images_per_second_without_npu": clock_mhz * 1e6 / pipeline_cycles,
        "npu_lanes": npu.get("lanes", 0) if npu else 0,
        "npu_weight_bits": npu.get("weight_bits", 0) if npu else 0,
        "npu_weight_memory_bits": npu.get("weight_memory_bits", 0) if npu else 0,
        "adders": totals["adders"],
        "register_bits": totals["register_bits"],
        "line_buffer_bits": totals["line_buffer_bits"],
        "nonzero_weights": totals["nonzero_weights"],
        "max_comb_adder_levels": totals["max_comb_adder_levels"],
        "layers": [
            {
                "name": l.get("layer"),
                "module": l.get("module"),
                "kind": l.get("kind"),
                "input_shape": l.get("input_shape"),
                "output_shape": l.get("output_shape"),
                "nonzero_weights": l.get("nonzero_weights", 0),
                "adders": l.get("adders", 0),
                "register_bits": l.get("register_bits", 0),
                "line_buffer_bits": l.get("line_buffer_bits", 0),
                "pipeline_stages": l.get("pipeline_stages", 0),
                "comb_adder_levels": l.get("comb_adder_levels", 0),
                **{k: l[k] for k in ("kernel", "stride", "padding", "groups", "fifo_depths", "lanes") if k in l},
            }
            for l in layers
        ],
    }


def open_design(path: Path | str) -> Design:
    path = Path(path)
    manifest_path = path / "design.json"
    if not path.is_dir():
        raise DesignError(f"'{path}' is not a directory (expected a design written by `hashiflex compile`)")
    if not manifest_path.is_file():
        raise DesignError(f"'{path}' is not a compiled design: it has no design.json")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as error:
        raise DesignError(f"'{manifest_path}' is corrupt: {error}")
    if manifest.get("format") != DESIGN_FORMAT:
        raise DesignError(f"'{path}' was written by another version (format {manifest.get('format')!r})")
    for key, rel in manifest["files"].items():
        for item in rel if isinstance(rel, list) else [rel]:
            if not (path / item).is_file():
                raise DesignError(f"design '{path}' is incomplete: {item} is missing")
    return Design(path, manifest)


# ---------------------------------------------------------------------------
# Simulate
# ---------------------------------------------------------------------------


@dataclass
class SimulationResult:
    logits: np.ndarray  # (N, classes) int64, from the RTL
    classes: np.ndarray  # (N,) int64, from the RTL
    out_cycles: np.ndarray  # cycle of each out_valid
    cycles_per_image: float  # measured: median spacing of outputs
    latency_cycles: int  # measured: first pixel of image 0 accepted -> its out_valid
    stalls: int  # cycles with in_valid && !in_ready
    compared: int = 0  # outputs compared with the golden model (0 without --check)
    mismatches: int = 0
    golden_logits: np.ndarray | None = None
    golden_classes: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        return self.mismatches == 0


def pack_pixels(x_int: np.ndarray, bits: int) -> list[int]:
    """(N, C, H, W) integers -> one int per pixel in raster order, channel 0 in the low bits."""
    n, c, h, w = x_int.shape
    mask = (1 << bits) - 1
    pixels = np.transpose(x_int, (0, 2, 3, 1)).reshape(-1, c)
    words = [0] * len(pixels)
    masked = (pixels & mask).astype(object)
    for ch in range(c):
        column = masked[:, ch]
        shift = ch * bits
        words = [word | (int(v) << shift) for word, v in zip(words, column)]
    return words


def split_fields(value: int, count: int, bits: int, signed: bool = True) -> list[int]:
    mask = (1 << bits) - 1
    fields = []
    for i in range(count):
        v = (value >> (i * bits)) & mask
        if signed and v >> (bits - 1):
            v -= 1 << bits
        fields.append(v)
    return fields


def npu_write_sequence(manifest: dict, weights: dict) -> list[tuple[int, int]]:
    """
    (address, data) words that load `weights` into the NPU's shadow bank: `k*N + n` for
    W[n, k], `N*K + n` for bias[n]. Classes beyond the given ones (a task with fewer classes
    than the NPU holds) get zero weights and the most negative bias.
    """
    n_cap, k = manifest["classes"], manifest["features"]
    full = padded_weights(manifest, weights)
    w, b = full["weights"], full["bias"]
    mask = (1 << manifest["npu_bias_bits"]) - 1
    words = [(kk * n_cap + nn, int(w[nn, kk]) & mask) for kk in range(k) for nn in range(n_cap)]
    words += [(n_cap * k + nn, int(b[nn]) & mask) for nn in range(n_cap)]
    return words


def padded_weights(manifest: dict, weights: dict) -> dict:
    """The full-capacity weights the NPU holds after `npu_write_sequence`."""
    n_cap, k = manifest["classes"], manifest["features"]
    w = np.zeros((n_cap, k), dtype=np.int64)
    b = np.full(n_cap, -(1 << (manifest["npu_bias_bits"] - 1)), dtype=np.int64)
    used = weights["weights"].shape[0]
    w[:used], b[:used] = weights["weights"], weights["bias"]
    return {"weights": w, "bias": b}


def build_simulator(design: Design, progress: Progress = QUIET):
    from hashiflex.backends import verilator

    ports = [verilator.Port(p["name"], p["width"], p["dir"]) for p in design.manifest["ports"]]
    sv_files = [design.path / f for f in design.manifest["files"]["sv"]]
    try:
        with progress.step("building the Verilator model (cached after the first time)"):
            return verilator.build(sv_files, design.manifest["top"], ports, design.path / "obj_dir")
    except verilator.SimulatorNotFound as error:
        raise ToolchainError(str(error))
    except verilator.BuildError as error:
        raise ToolchainError(f"Verilator failed to build '{design.path}': {str(error).splitlines()[0]}")


def simulate(
    design_dir: Path | str,
    inputs: Path | str | np.ndarray,
    *,
    weights: Path | str | dict | None = None,
    check: bool = False,
    out: Path | str | None = None,
    writes_mid_stream: list[tuple[int, dict]] | None = None,
    progress: Progress = QUIET,
) -> SimulationResult:
    """
    Stream images through the RTL back to back and collect every output. With `weights`,
    the NPU is loaded through its write port (and swapped in) before the first image. With
    `check`, every output is compared with the golden model.

    `writes_mid_stream` is for reprogramming tests: [(k, weights)] loads `weights` and
    swaps once at least k pixels have been accepted; the golden model then uses, for each
    image, the weights current when its first pixel entered.
    """
    from hashiflex.backends import verilator
    from hashiflex.golden.semantics import Format, quantize_input

    design = open_design(design_dir)
    m = design.manifest
    shape = tuple(m["input_shape"])
    images = inputs if isinstance(inputs, np.ndarray) else load_images(inputs, "inputs", shape)
    if images.ndim != 4 or tuple(images.shape[1:]) != shape:
        raise InputError(f"inputs have shape {list(images.shape)}; the design takes Nx{'x'.join(map(str, shape))}")
    if np.isnan(images).any():
        raise InputError("inputs hold NaN values")
    fmt = Format(m["input_format"]["bits"], m["input_format"]["signed"], m["input_format"]["frac"])
    x_int = quantize_input(images, fmt)
    module = parse_ir(design.file("po2"))
    writes: list[tuple[int, int, int]] = []
    swaps: list[int] = []
    schedule: list[tuple[int, dict]] = []  # (first image index, weights) for the golden model
    if weights is not None:
        npu = weights if isinstance(weights, dict) else load_weights(weights)
        check_npu_weights(module, npu)
        writes += [(-1, a, d) for a, d in npu_write_sequence(m, npu)]
        swaps.append(-1)
        schedule.append((0, padded_weights(m, npu)))
    pixels_per_image = shape[1] * shape[2]
    for k, npu in writes_mid_stream or []:
        check_npu_weights(module, npu)
        writes += [(k, a, d) for a, d in npu_write_sequence(m, npu)]
        swaps.append(k)
        # the swap pulse comes after the writes, one per cycle; the image it applies to is
        # the first whose first pixel had not been accepted when the pulse was seen, which
        # the simulation reports back (see below)
        schedule.append((None, padded_weights(m, npu)))
    simulator = build_simulator(design, progress)
    pixels = pack_pixels(x_int, fmt.bits)
    with progress.step(f"simulating {len(images)} images ({len(pixels)} pixels)"):
        try:
            outputs = simulator.run(pixels, writes=writes, swaps=swaps, drain_outputs=len(images))
        except verilator.SimulationError as error:
            raise ToolchainError(str(error).splitlines()[0])
    outputs = outputs[: len(images)]
    if len(outputs) < len(images):
        raise ToolchainError(f"the RTL produced {len(outputs)} outputs for {len(images)} images")
    names = [p["name"] for p in m["ports"] if p["dir"] == "out" and p["name"] not in ("in_ready", "out_valid")]
    cls_i, log_i = names.index("out_class"), names.index("out_logits")
    classes = np.array([o[1][cls_i] for o in outputs], dtype=np.int64)
    logits = np.array(
        [split_fields(o[1][log_i], m["classes"], m["logit_bits"]) for o in outputs], dtype=np.int64
    )
    out_cycles = np.array([o[0] for o in outputs], dtype=np.int64)
    pre_cycles = sum(1 for w in writes if w[0] < 0) + sum(1 for s in swaps if s < 0)
    spacing = float(np.median(np.diff(out_cycles))) if len(out_cycles) > 1 else float("nan")
    result = SimulationResult(
        logits=logits,
        classes=classes,
        out_cycles=out_cycles,
        cycles_per_image=spacing,
        latency_cycles=int(out_cycles[0] - pre_cycles),
        stalls=simulator.stats.stalls,
    )
    if check:
        with progress.step("golden model"):
            gold_logits, gold_classes = golden_with_schedule(
                module, x_int, schedule, swap_images=_swap_images(simulator, writes_mid_stream, pixels_per_image)
            )
        bad = np.any(gold_logits != logits, axis=1) | (gold_classes != classes)
        result.compared = len(images)
        result.mismatches = int(bad.sum())
        result.golden_logits, result.golden_classes = gold_logits, gold_classes
        message = (
            f"compared {result.compared} outputs (logits and class) with the golden model: "
            f"{result.compared - result.mismatches} equal, {result.mismatches} differ"
        )
        print(message)
        if result.mismatches:
            first = int(np.flatnonzero(bad)[0])
            print(f"first difference: image {first}: RTL class {classes[first]} logits {logits[first].tolist()}, "
                  f"golden class {gold_classes[first]} logits {gold_logits[first].tolist()}")
    if out is not None:
        with atomic_file(out, binary=True) as stream:
            np.savez(stream, logits=logits, classes=classes, out_cycles=out_cycles,
                     logits_frac=m["logits_frac"])
        progress.say(f"wrote {out}")
    progress.say(
        f"{len(images)} images: {spacing:g} cycles/image measured "
        f"(report: {design.report['cycles_per_image']}), latency {result.latency_cycles} cycles, "
        f"{result.stalls} stall cycles"
    )
    return result


def _swap_images(simulator, writes_mid_stream, pixels_per_image: int) -> list[int]:
    """
    For each mid-stream reload, the first image classified with it. The swap pulse is
    issued once k pixels were accepted and all of the reload's writes are done; it applies
    to every image whose first pixel comes after it. The harness reports the accepted
    pixel count at each swap pulse.
    """
    if not writes_mid_stream:
        return []
    accepted_at_swaps = simulator.swap_accepted_counts()
    return [-(-count // pixels_per_image) for count in accepted_at_swaps[-len(writes_mid_stream):]]


def golden_with_schedule(module, x_int: np.ndarray, schedule: list, swap_images: list[int]):
    """Golden logits/classes when the NPU weights change at given images."""
    from hashiflex.golden import model as golden_model
    from hashiflex.golden.semantics import argmax_lowest

    # (first image, weights) segments; the design's own weights until the first reload
    mid = iter(swap_images)
    segments = [(0, None)] + [
        (first if first is not None else next(mid), npu) for first, npu in schedule
    ]
    pieces = []
    for i, (begin, npu) in enumerate(segments):
        end = min(segments[i + 1][0] if i + 1 < len(segments) else len(x_int), len(x_int))
        if end <= begin:
            continue
        w = None if npu is None else npu["weights"]
        b = None if npu is None else npu["bias"]
        pieces.append(golden_model.run_int(module, x_int[begin:end], w, b))
    logits = np.concatenate(pieces)
    return logits, argmax_lowest(logits)


# ---------------------------------------------------------------------------
# Demo
# ---------------------------------------------------------------------------

DEMO_EXAMPLE = "tiny_cnn"


def demo(out: Path | str = "out/demo", *, images: int = 0, progress: Progress = QUIET) -> int:
    """
    The main job on the built-in digits example: compile the trained tiny CNN, simulate
    every digits test image (and random and extreme images) in RTL, and print RTL-vs-golden
    agreement, accuracy and the design's figures. Returns the exit code.
    """
    import time

    from hashiflex.examples.digits import load_digits_split

    start = time.perf_counter()
    design = compile(DEMO_EXAMPLE, out, progress=progress)
    _, _, x_test, y_test = load_digits_split(size=design.manifest["input_shape"][1])
    x = x_test.numpy()
    y = y_test.numpy()
    if images:
        x, y = x[:images], y[:images]
    rng = np.random.default_rng(0)
    shape = tuple(design.manifest["input_shape"])
    stress = np.concatenate(
        [
            rng.random((8, *shape), dtype=np.float32),  # random
            np.full((1, *shape), 1e6, np.float32),  # all-max (saturates the input format)
            np.full((1, *shape), -1e6, np.float32),  # all-min
            np.zeros((1, *shape), np.float32),
        ]
    )
    result = simulate(design.path, np.concatenate([x, stress]), check=True, progress=progress)
    report = design.report
    n = len(x)
    accuracy = float((result.classes[:n] == y).mean())
    golden_accuracy = float((result.golden_classes[:n] == y).mean())
    lines = [
        "",
        f"HaShiFlex demo: {DEMO_EXAMPLE} on scikit-learn digits ({n} test images + {len(stress)} random/extreme)",
        f"  RTL vs golden model : {result.compared - result.mismatches}/{result.compared} outputs bit-exact"
        + (" (logits and class)" if result.ok else "  <-- MISMATCH"),
        f"  accuracy (RTL)      : {100 * accuracy:.2f} %   (golden: {100 * golden_accuracy:.2f} %)",
        f"  cycles per image    : {result.cycles_per_image:g} measured, {report['cycles_per_image']} in the report",
        f"  latency             : {result.latency_cycles} cycles measured, {report['latency_cycles']} in the report",
        f"  throughput          : {report['images_per_second']:.3g} images/s at {report['clock_mhz']:g} MHz",
        f"  adders              : {report['adders']}",
        f"  register bits       : {report['register_bits']} (line buffers {report['line_buffer_bits']})",
        f"  NPU                 : {report['npu_lanes']} lanes, {report['npu_cycles_per_image']} cycles/image, "
        f"{result.stalls} stall cycles",
        f"  design              : {design.path}/ (SystemVerilog in rtl/, report.json)",
        f"  total time          : {time.perf_counter() - start:.0f} s",
    ]
    print("\n".join(lines))
    return 0 if result.ok and result.cycles_per_image == report["cycles_per_image"] else 1


# ---------------------------------------------------------------------------
# Fine-tuning the NPU (implemented in hashiflex/finetune.py)
# ---------------------------------------------------------------------------


def finetune(design_dir, data, labels, out, *, epochs: int = 200, seed: int = 0, progress: Progress = QUIET):
    """Train the NPU classifier on the hardened layers' exact integer features; write W.npz."""
    from hashiflex import finetune as ft

    return ft.finetune(design_dir, data, labels, out, epochs=epochs, seed=seed, progress=progress)


def program(design_dir, weights, out, *, progress: Progress = QUIET):
    """Write the NPU's load sequence (port writes, then a swap) for new weights."""
    from hashiflex import finetune as ft

    return ft.program(design_dir, weights, out, progress=progress)
