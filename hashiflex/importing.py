"""
The front of the flow as API calls: quantise a torch model and build its layer-level po2
IR (`import_model`, with the checks that keep the golden model's int64 arithmetic exact),
and run the golden model on that IR (`golden`), plus the `import` and `golden` commands.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from hashiflex.design_dir import atomic_file, parse_ir, print_ir
from hashiflex.errors import InputError, ModelError
from hashiflex.loading import check_images, default_calibration, load_images, load_model, parse_shape
from hashiflex.npu_weights import check_npu_weights, load_weights, logits_frac
from hashiflex.progress import QUIET, Progress


def import_model(
    spec: str,
    *,
    calib: Path | str | np.ndarray | None = None,
    input_shape: str | tuple | None = None,
    act_bits: int | None = None,
    exp_bits: int | None = None,
    prune: float | None = None,
    npu_weight_bits: int | None = None,
    ptq: str | None = None,
    progress: Progress = QUIET,
):
    """
    Quantise a model and build its layer-level po2 IR; returns (ModuleOp, QuantizedModel).
    A quantisation option left at None takes its default from `quant.QuantOptions`.

    A SPEC ending in .pt is a `hashiflex train` checkpoint: its network is rebuilt exactly
    (hashiflex/train.py) and the quantisation options are the ones it was trained with.
    """
    import torch

    from hashiflex.frontend import quant
    from hashiflex.frontend.importer import ImportError_
    from xdsl.utils.exceptions import DiagnosticException

    from hashiflex import train

    given = dict(act_bits=act_bits, exp_bits=exp_bits, prune=prune, weight_bits=npu_weight_bits,
                 ptq=ptq)
    options = quant.QuantOptions(**train.resolve_options(
        act_bits=act_bits, exp_bits=exp_bits, prune=prune, npu_weight_bits=npu_weight_bits,
        ptq=ptq))
    if train.is_checkpoint_spec(spec):
        with progress.step(f"loading the checkpoint {spec}"):
            name, quantized, record = train.load_checkpoint(spec)
        # An option the user gave that differs from the checkpoint's is refused: the trained
        # network's quantisation is fixed.
        clash = [k for k, v in given.items() if k != "ptq" and v is not None
                 and v != record["options"].get(k)]
        if clash:
            raise InputError(f"the checkpoint '{spec}' was trained with {clash[0]}="
                             f"{record['options'][clash[0]]}; its quantisation options are fixed")
        module = quantized.rename(name).module
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
    try:
        # a float -> int64 cast of an out-of-range bias is refused by check_int64_range below
        with progress.step(f"quantising {loaded.name}"), np.errstate(invalid="ignore"):
            example = loaded.example
            if (
                example is not None
                and calib_images is None
                and options == quant.QuantOptions(**example.quant_options)  # the checkpoint's
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
                    loaded.module, torch.from_numpy(calib_images), **asdict(options)
                )
        with progress.step("building po2 IR"):
            module = quantized.rename(loaded.name).module
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
    The golden model (also the frontend's integer executor) and the po2 interpreter compute in
    int64: refuse a network whose exact accumulators could leave it (e.g. --exp-bits 6 gives
    weight shifts up to 63), instead of a wrapped, silently wrong reference or an overflow.
    """
    from hashiflex.dialects import po2
    from hashiflex.golden.semantics import decode_weights

    limit = 1 << 62
    for op in module.walk():
        layer = op.layer if isinstance(op, po2.LayerOp) else op.name
        if isinstance(op, po2.Conv2dOp):
            fmt = op.input.type.fmt
            x_max = max(abs(fmt.lo), abs(fmt.hi))
            weights = decode_weights(op.weight_codes).astype(object)
            w_sum = np.abs(weights).reshape(weights.shape[0], -1).sum(axis=1)
            bias = op.bias
            shifts = op.shift
            worst = max(x_max * int(w) + abs(int(b)) + (1 << max(int(r), 0))
                        for w, b, r in zip(w_sum, bias, shifts))
        elif isinstance(op, po2.AvgPoolOp):
            fmt = op.input.type.fmt
            _, h, w = op.input.type.dims
            worst = h * w * max(abs(fmt.lo), abs(fmt.hi)) * op.multiplier
            worst += 1 << max(op.shift + fmt.frac - op.output.type.fmt.frac, 0)
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


def import_command(spec: str, out: Path, *, progress: Progress = QUIET, **options) -> None:
    module, _ = import_model(spec, progress=progress, **options)
    print_ir(module, out)
    progress.say(f"wrote {out}")


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
        np.savez(stream, logits=result.logits, classes=result.classes,
                 logits_frac=logits_frac(module, npu))
    progress.say(f"wrote {out}")
