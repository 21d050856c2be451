"""`hashiflex sensitivity`: accuracy of the Po2 model versus pruning and the number formats.

    sensitivity("tiny_cnn", "x.npy", "y.npy", "out/sens")   -> dict (also DIR/sensitivity.json)

Why: the reference design publishes its accuracy together with its sensitivity to
quantisation and pruning; this is that table for ours. Each point re-quantises the float model
exactly as `compile` would with those options (PTQ: adaptive rounding by default, the
activation formats calibrated on the rounded network) and measures the accuracy with the
*integer* golden model on the exported po2 IR (`QuantizedModel.predict`, the numbers the
golden model and the RTL compute). With ``qat_epochs > 0`` every point is also fine-tuned
(`hashiflex train`'s QAT loop, train.qat) and measured again.

The axes, each around the options given (the "base" point):

- ``prune``: every conv layer prunes the fraction p of its smallest |w| (what `--prune p` does);
- ``prune_layer``: one conv layer at a time prunes p, the others none;
- ``exp_bits`` and ``act_bits``: the formats of `--exp-bits` / `--act-bits`.

Data: a seeded split as in `train` (``val_fraction`` held out); PTQ calibrates on the first
256 images of the training part, accuracy is measured on the held-out part.

Adders: beside each point, ``nonzero_weights`` (nonzero Po2 conv weights in the quantised
graph: the adder-tree inputs) and ``adders`` = sum over conv output channels of
(nonzero weights + nonzero bias - 1), the adder-tree adders of one output pixel before
po2-cse shares subexpressions (what `compile --no-cse` builds at 1 pixel/cycle; the NPU
classifier is a MAC, not counted). ``adders_saved`` is against the unpruned point of the same
formats (PTQ graphs); with QAT, ``qat_adders`` counts the fine-tuned graph.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hashiflex.errors import InputError, ModelError
from hashiflex.progress import QUIET, Progress

FORMAT = "hashiflex-sensitivity/1"
PRUNE_GRID = (0.0, 0.25, 0.5, 0.75)
EXP_BITS_GRID = (2, 3, 4)
ACT_BITS_GRID = (4, 6, 8)


@dataclass(frozen=True)
class Point:
    """One quantisation to measure: options (QuantOptions keywords) and an optional one-layer
    pruning (layer name, fraction) applied on top."""

    options: tuple  # sorted (key, value) pairs
    layer: str | None = None
    layer_prune: float = 0.0


def parse_grid(text, kind, flag: str) -> tuple:
    """A comma-separated grid of `kind` values (a tuple passes through), one-line errors."""
    if isinstance(text, (tuple, list)):
        values = tuple(kind(v) for v in text)
    else:
        try:
            values = tuple(kind(v) for v in str(text).split(",") if v.strip())
        except ValueError:
            raise InputError(f"{flag} must be comma-separated {kind.__name__}s, got '{text}'")
    if not values:
        raise InputError(f"{flag} is empty")
    return tuple(dict.fromkeys(values))  # unique, in the given order


def conv_adders(layers) -> tuple[int, int]:
    """(nonzero Po2 conv weights, adder-tree adders before CSE) of the exported po2 layer ops."""
    from hashiflex.dialects import po2

    nonzero = adders = 0
    for op in layers:
        if isinstance(op, po2.Conv2dOp):
            codes = op.weight_codes
            per_channel = np.count_nonzero(codes.reshape(codes.shape[0], -1), axis=1)
            terms = per_channel + (np.asarray(op.bias) != 0)
            nonzero += int(per_channel.sum())
            adders += int(np.maximum(terms - 1, 0).sum())
    return nonzero, adders


def _quantize(model, calib, point: Point):
    """The PTQ model of one point: `quantize_ptq`'s steps, with the one-layer mask set before
    the rounding (so adaptive rounding sees the pruned layer, as `--prune` does)."""
    from hashiflex.frontend import quant
    from hashiflex.frontend.ptq import adaround

    options = quant.QuantOptions(**dict(point.options))
    if point.layer is None:
        return quant.quantize_ptq(model, calib, **dict(point.options))
    fq = quant.build_fake_quant(model, calib, options)
    op = next(o for o in fq.ops if o.op_name == point.layer)
    op.prune_mask = quant._prune_mask(op.weight, point.layer_prune)
    if options.ptq == "adaround":
        adaround(fq, calib)
    quant.calibrate(fq, calib)
    return quant.QuantizedModel(fq.eval())


def sensitivity(spec: str, data, labels, out, *, prune_grid=PRUNE_GRID,
                exp_bits_grid=EXP_BITS_GRID, act_bits_grid=ACT_BITS_GRID, per_layer: bool = True,
                qat_epochs: int = 0, lr: float = 1e-3, batch_size: int = 64, seed: int = 0,
                val_fraction: float = 0.2, input_shape=None, act_bits: int | None = None,
                exp_bits: int | None = None, prune: float | None = None,
                npu_weight_bits: int | None = None, ptq: str | None = None, calib=None,
                plots: bool = True, progress: Progress = QUIET) -> dict:
    """Measure every point (see the module doc); write DIR/sensitivity.json and the plots."""
    import torch

    from hashiflex import api, train
    from hashiflex.frontend import quant

    base = train.resolve_options(act_bits=act_bits, exp_bits=exp_bits, prune=prune,
                                 npu_weight_bits=npu_weight_bits, ptq=ptq)
    train.check_training_options(qat_epochs, lr, batch_size)
    prune_grid = parse_grid(prune_grid, float, "--prune-grid")
    exp_bits_grid = parse_grid(exp_bits_grid, int, "--exp-bits-grid")
    act_bits_grid = parse_grid(act_bits_grid, int, "--act-bits-grid")
    for p in prune_grid:
        api.check_quant_options(base["act_bits"], base["exp_bits"], p, base["weight_bits"])
    for e in exp_bits_grid:
        api.check_quant_options(base["act_bits"], e, base["prune"], base["weight_bits"])
    for a in act_bits_grid:
        api.check_quant_options(a, base["exp_bits"], base["prune"], base["weight_bits"])
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"'{out}' exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / "sensitivity.json").is_file():
        raise InputError(f"'{out}' is not empty and holds no sensitivity.json: refusing to "
                         "replace it (give a new path)")
    loaded, images, y = train.load_labelled_data(spec, data, labels, input_shape)
    train_idx, val_idx = train.split(len(images), val_fraction, seed)
    x_t, y_t = torch.from_numpy(images[train_idx]), torch.from_numpy(y[train_idx])
    x_v, y_v = torch.from_numpy(images[val_idx]), y[val_idx]
    calib_x = x_t[:train.CALIB_IMAGES] if calib is None else torch.from_numpy(
        api.load_images(calib, "calibration data", loaded.input_shape))
    model = loaded.module.eval()
    with torch.no_grad():
        float_acc = float((model(x_v).argmax(1).numpy() == y_v).mean()) * 100

    def options(**change) -> tuple:
        return tuple(sorted(dict(base, **change).items()))

    try:
        fq0 = quant.build_fake_quant(model, calib_x, quant.QuantOptions(**base))
    except (quant.UnsupportedModelError, quant.ModelShapeError, ValueError) as error:
        raise ModelError(f"quantising {loaded.name} failed: {error}")
    conv_layers = [op.op_name for op in fq0.ops if isinstance(op, quant.FqConv2d)]
    axes: dict[str, list[tuple[dict, Point]]] = {
        "prune": [({"prune": p}, Point(options(prune=p))) for p in prune_grid],
        "exp_bits": [({"exp_bits": e}, Point(options(exp_bits=e))) for e in exp_bits_grid],
        "act_bits": [({"act_bits": a}, Point(options(act_bits=a))) for a in act_bits_grid],
    }
    if per_layer:
        axes["prune_layer"] = [
            ({"layer": name, "prune": p},
             Point(options(prune=0.0), name, p) if p > 0 else Point(options(prune=0.0)))
            for name in conv_layers for p in prune_grid]
    unique = list(dict.fromkeys(point for rows in axes.values() for _, point in rows))
    progress.say(f"{loaded.name}: float {float_acc:.2f} % on {len(y_v)} held-out images; "
                 f"{len(unique)} quantisations ({base['ptq']} PTQ"
                 f"{f', QAT {qat_epochs} epochs each' if qat_epochs else ''})")

    measured: dict[Point, dict] = {}
    start = time.perf_counter()
    for i, point in enumerate(unique, 1):
        t0 = time.perf_counter()
        try:
            with np.errstate(invalid="ignore"):
                quantized = _quantize(model, calib_x, point)
        except (quant.UnsupportedModelError, quant.ModelShapeError, ValueError) as error:
            raise ModelError(f"quantising {loaded.name} failed: {error}")
        row = dict(ptq=train.int_accuracy(quantized, x_v, y_v))
        row["nonzero_weights"], row["adders"] = conv_adders(quantized.layers)
        if qat_epochs:
            _, row["qat"] = train.qat(model, quantized, x_t, y_t, epochs=qat_epochs, lr=lr,
                                      batch_size=batch_size, seed=seed,
                                      evaluate=lambda q: train.int_accuracy(q, x_v, y_v))
            # fine-tuning moves weights across the zero level: the QAT graph's own count
            row["qat_nonzero_weights"], row["qat_adders"] = conv_adders(quantized.layers)
        row["seconds"] = time.perf_counter() - t0
        measured[point] = row
        what = ", ".join(f"{k} {v}" for k, v in dict(point.options).items() if v != base[k])
        if point.layer:
            what = f"{point.layer} prune {point.layer_prune}" + (f", {what}" if what else "")
        qat_text = f", QAT {row['qat']:.2f} %" if qat_epochs else ""
        progress.say(f"[{i}/{len(unique)}] {what or 'base'}: PTQ {row['ptq']:.2f} %{qat_text}, "
                     f"{row['adders']} adders ({row['seconds']:.1f} s)")

    def unpruned(point: Point) -> dict:
        return measured.get(Point(tuple(sorted(dict(dict(point.options), prune=0.0).items()))))

    result_axes = {}
    for axis, rows in axes.items():
        result_axes[axis] = []
        for label, point in rows:
            row = dict(label, **measured[point])
            ref = unpruned(point)
            row["adders_saved"] = ref["adders"] - row["adders"] if ref else None
            result_axes[axis].append(row)
    result = dict(
        format=FORMAT, spec=train._source_spec(spec), name=loaded.name,
        options=base, float=float_acc, val_images=len(y_v), train_images=len(y_t),
        calib_images=len(calib_x), seed=seed, val_fraction=val_fraction,
        qat=dict(epochs=qat_epochs, lr=lr, batch_size=batch_size) if qat_epochs else None,
        conv_layers=conv_layers, axes=result_axes,
        adders_note="adders = sum over conv output channels of (nonzero Po2 weights + nonzero "
                    "bias - 1) in the quantised graph, before po2-cse; NPU not counted",
        seconds=time.perf_counter() - start)
    with api.atomic_dir(out) as tmp:
        (tmp / "sensitivity.json").write_text(json.dumps(result, indent=2) + "\n")
        if plots:
            write_plots(result, tmp)
    progress.say(f"wrote {out}/sensitivity.json" + (" and plots" if plots else "")
                 + f" in {result['seconds']:.0f} s")
    return result


def write_plots(result: dict, directory: Path) -> list[Path]:
    """prune.png (accuracy and adders saved vs the pruned fraction, all layers and each layer)
    and formats.png (accuracy vs --exp-bits and --act-bits)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = result["axes"]
    methods = ["ptq"] + (["qat"] if result.get("qat") else [])
    written = []

    fig, (acc_ax, add_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"ptq": "--", "qat": "-"}  # one colour per series, PTQ dashed, QAT solid
    series = [("all layers", axes["prune"], 2)] + [
        (f"{name} only", [r for r in axes["prune_layer"] if r["layer"] == name], 1)
        for name in (result["conv_layers"] if "prune_layer" in axes else [])]
    for i, (label, rows, width) in enumerate(series):
        colour = f"C{i}"
        fractions = [r["prune"] for r in rows]
        for method in methods:
            acc_ax.plot(fractions, [r[method] for r in rows], styles[method], marker="o",
                        ms=3 + width, lw=width, color=colour, label=f"{label} ({method.upper()})")
        add_ax.plot(fractions, [r["adders_saved"] for r in rows], "-", marker="o", ms=3 + width,
                    lw=width, color=colour, label=label)
    acc_ax.axhline(result["float"], color="grey", lw=0.8, ls=":", label="float")
    acc_ax.set(xlabel="fraction of conv weights pruned", ylabel="accuracy (%)",
               title=f"{result['name']}: accuracy vs pruning")
    add_ax.set(xlabel="fraction of conv weights pruned", ylabel="adders saved (before CSE)",
               title="adders saved by pruning")
    acc_ax.legend(fontsize=7)
    add_ax.legend(fontsize=7)
    fig.tight_layout()
    path = directory / "prune.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    fig, plot_axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, axis, label in zip(plot_axes, ("exp_bits", "act_bits"), ("--exp-bits", "--act-bits")):
        rows = axes[axis]
        for method in methods:
            ax.plot([r[axis] for r in rows], [r[method] for r in rows], "o-",
                    label=method.upper())
        ax.axhline(result["float"], color="grey", lw=0.8, ls=":", label="float")
        ax.set(xlabel=label, ylabel="accuracy (%)", title=f"{result['name']}: accuracy vs {label}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = directory / "formats.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written
