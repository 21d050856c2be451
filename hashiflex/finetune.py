"""
Fine-tuning the NPU classifier of a compiled design, without new RTL.

The hardened layers of a design are frozen; only the classifier on the NPU is
reprogrammable. Fine-tuning therefore trains a softmax regression on the *exact integer
features* that enter the NPU (computed by the golden model on the design's own
`model.po2.mlir`, so they are the features the chip computes), quantises it to the NPU's
number format, and writes it as `W.npz`. `program` turns a `W.npz` into the NPU's load
image (the writes on its port, then a swap). See docs/finetuning.md.

    features(design, images)                     -> (N, K) int64, the NPU's input vectors
    finetune(design, data, labels, "W.npz")       -> dict (weights, bias, accuracies, ...)
    program(design, "W.npz", "W.load")            -> Path of the load image

`python -m hashiflex.finetune --demo` runs the whole demonstration on the digits example.

Number format (docs/semantics.md, "NPU linear"): the NPU takes features `x` at scale
`2^-Fx`, weights as signed `weight_bits` integers at scale `2^-weight_frac` and biases as
signed `bias_bits` integers at the accumulator's scale `2^-(Fx + weight_frac)`. A trained
real-valued classifier `(W, b)` becomes `W_int = saturate(floor(W * 2^wf + 1/2))` and
`b_int = floor(b * 2^(Fx + wf) + 1/2)` with the largest `wf` for which every rounded
`|W|` fits `2^(weight_bits-1) - 1` -- the rule of golden/semantics.py
(`quantize_npu_weights`, `quantize_npu_bias`, `npu_weight_frac`) that the frontend's
fake-quant classifier uses too. Because the argmax does not depend on the logits' scale, the
weight_frac of new weights may differ from the one the design was compiled with; the
logits the RTL reports are then at scale `2^-(Fx + weight_frac)` of the new weights.

W.npz arrays:

    weights      [classes_used, K] int64   W_int, row n = NPU class n
    bias         [classes_used]    int64   b_int
    weight_frac  scalar int64              the weights' Po2 scale 2^-weight_frac
    feature_frac scalar int64              Fx, the features' scale
    classes      [classes_used]    int64   the label value of each NPU class (identity:
                                           labels are used as class indices, no remapping)

NPU classes past `classes_used` are loaded with zero weights and the most negative bias
(`npu_weights.npu_write_sequence`), so they never win the argmax.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from hashiflex.design_dir import Design, atomic_file, open_design, parse_ir
from hashiflex.errors import DesignError, HashiflexError, InputError
from hashiflex.loading import check_images, load_images, load_npy
from hashiflex.npu_weights import check_npu_weights, integer_weights, load_weights, npu_write_sequence, padded_weights
from hashiflex.progress import QUIET, Progress

LOAD_FORMAT = "hashiflex-npu-load/1"


# ---------------------------------------------------------------------------
# Design access
# ---------------------------------------------------------------------------


class _DesignView:
    """What fine-tuning needs of a design: its po2 module, the NPU op and its formats."""

    def __init__(self, design_dir_or_module):
        from hashiflex.dialects import po2
        from hashiflex.golden.model import input_type

        if isinstance(design_dir_or_module, (str, Path, Design)):
            design = (
                design_dir_or_module
                if isinstance(design_dir_or_module, Design)
                else open_design(design_dir_or_module)
            )
            self.design = design
            self.module = parse_ir(design.file("po2"))
            self.name = design.manifest["name"]
        else:
            self.design = None
            self.module = design_dir_or_module
            self.name = "module"
        ops = [op for op in self.module.walk() if isinstance(op, po2.NpuLinearOp)]
        if len(ops) != 1:
            raise DesignError(f"the design '{self.name}' has no NPU classifier")
        self.npu = ops[0]
        self.in_type = input_type(self.module)
        self.classes, self.features = self.npu.weight_matrix.shape
        self.feature_frac = self.npu.input.type.fmt.frac
        self.weight_bits = self.npu.weight_bits
        self.bias_bits = self.npu.bias_bits
        self.weight_frac = self.npu.weight_frac

    @property
    def manifest(self) -> dict:
        if self.design is not None:
            return self.design.manifest
        return {"classes": self.classes, "features": self.features, "npu_bias_bits": self.bias_bits}

    def original_weights(self) -> dict:
        return {
            "weights": self.npu.weight_matrix.astype(np.int64),
            "bias": np.asarray(self.npu.bias, dtype=np.int64),
            "weight_frac": self.weight_frac,
        }


def _images(view: _DesignView, data, what: str) -> np.ndarray:
    shape = tuple(view.in_type.dims)
    if isinstance(data, np.ndarray):
        return check_images(data, what, shape)
    return load_images(data, what, shape)


def _labels(labels, count: int, capacity: int) -> np.ndarray:
    if not isinstance(labels, np.ndarray):
        labels = load_npy(labels, "labels")
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise InputError(f"labels have shape {list(labels.shape)}; expected a 1-D array of ints")
    if not np.issubdtype(labels.dtype, np.integer):
        if np.issubdtype(labels.dtype, np.floating) and np.all(labels == np.round(labels)):
            labels = labels.astype(np.int64)
        else:
            raise InputError(f"labels hold {labels.dtype}; expected integer class labels")
    if len(labels) != count:
        raise InputError(f"there are {len(labels)} labels for {count} images")
    if labels.min() < 0:
        raise InputError(f"labels must be >= 0, found {int(labels.min())}")
    if labels.max() >= capacity:
        raise InputError(
            f"the labels need {int(labels.max()) + 1} classes (largest label {int(labels.max())}); "
            f"the NPU of this design holds {capacity} classes (labels 0..{capacity - 1})"
        )
    return labels.astype(np.int64)


# ---------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------


def _features_of(view: _DesignView, images: np.ndarray, batch: int = 512) -> np.ndarray:
    from hashiflex.golden import model as golden_model
    from hashiflex.golden.semantics import quantize_input

    target = view.npu.input
    func = golden_model.find_network(view.module)
    x_int = quantize_input(images, view.in_type.fmt)
    if target is func.args[0]:  # no hardened layer before the NPU
        return x_int.reshape(len(x_int), -1).astype(np.int64)
    pieces = []
    for start in range(0, len(x_int), batch):
        found: list[np.ndarray] = []

        def capture(op, out):
            if op.results and op.results[0] is target:
                found.append(out)

        try:
            golden_model.run_int(view.module, x_int[start : start + batch], capture=capture)
        except golden_model.GoldenError as error:
            raise InputError(str(error))
        pieces.append(found[-1].reshape(len(found[-1]), -1))
    feats = np.concatenate(pieces).astype(np.int64)
    if feats.shape[1] != view.features:
        raise DesignError(f"the NPU takes {view.features} features, the network gives {feats.shape[1]}")
    return feats


def features(design_dir_or_module, images_float) -> np.ndarray:
    """
    The exact integer feature vectors entering the NPU, (N, K) int64 at scale 2^-Fx:
    the images quantised by the design's input format and run through the hardened layers
    by the golden model on the design's `model.po2.mlir` (or on a given po2 ModuleOp).
    """
    view = _DesignView(design_dir_or_module)
    return _features_of(view, _images(view, images_float, "images"))


# ---------------------------------------------------------------------------
# Quantisation to the NPU's number format
# ---------------------------------------------------------------------------


def weight_frac_for(max_abs: float, weight_bits: int) -> int:
    """The largest f with round_half_up(max_abs * 2^f) <= 2^(weight_bits-1) - 1."""
    from hashiflex.golden.semantics import npu_weight_frac

    return npu_weight_frac(max_abs, weight_bits)


def quantize_classifier(w: np.ndarray, b: np.ndarray, feature_frac: int, weight_bits: int,
                        bias_bits: int, weight_frac: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """
    Real (W, b) -> (W_int, b_int, weight_frac) in the NPU's format. The bias is saturated
    to `bias_bits`; if that would change it, weight_frac is lowered until it fits (a coarser
    weight grid); if no weight_frac fits, InputError.
    """
    w = np.asarray(w, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    from hashiflex.golden.semantics import quantize_npu_bias, quantize_npu_weights

    b_lo, b_hi = -(1 << (bias_bits - 1)), (1 << (bias_bits - 1)) - 1
    wf = weight_frac_for(float(np.abs(w).max(initial=0.0)), weight_bits) if weight_frac is None else weight_frac
    for _ in range(64):
        w_int = quantize_npu_weights(w, wf, weight_bits).astype(np.int64)
        b_real = quantize_npu_bias(b, feature_frac + wf)
        if b_real.min(initial=0) >= b_lo and b_real.max(initial=0) <= b_hi:
            return w_int, b_real.astype(np.int64), wf
        if not np.any(w_int):
            break
        wf -= 1
    raise InputError(
        f"the trained bias (max |b| = {np.abs(b).max():.3g}) does not fit the NPU's "
        f"{bias_bits}-bit bias at any usable weight scale"
    )


def integer_predict(feats: np.ndarray, npu: dict, manifest: dict) -> tuple[np.ndarray, np.ndarray]:
    """(logits, NPU class) of the golden model for the NPU loaded with `npu` (padded)."""
    from hashiflex.golden.model import npu_linear
    from hashiflex.golden.semantics import argmax_lowest

    full = padded_weights(manifest, npu)
    logits = npu_linear(feats, None, full["weights"], full["bias"])
    return logits, argmax_lowest(logits)


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


def _train(x: np.ndarray, y: np.ndarray, classes: int, *, epochs: int, seed: int,
           weight_decay: float, lr: float, init: tuple | None = None, quant=None):
    """Full-batch softmax regression with Adam (deterministic on CPU). Returns (W, b)."""
    import torch

    torch.manual_seed(seed)
    xt = torch.from_numpy(x.astype(np.float32))
    yt = torch.from_numpy(y)
    k = x.shape[1]
    if init is None:
        w = torch.zeros(classes, k, dtype=torch.float32)
        torch.nn.init.normal_(w, std=0.01)
        b = torch.zeros(classes, dtype=torch.float32)
    else:
        w = torch.tensor(init[0], dtype=torch.float32)
        b = torch.tensor(init[1], dtype=torch.float32)
    w.requires_grad_(True)
    b.requires_grad_(True)
    opt = torch.optim.Adam([w, b], lr=lr)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small problem: one thread is faster, and reproducible
    try:
        _steps(epochs, opt, xt, yt, w, b, quant, weight_decay)
    finally:
        torch.set_num_threads(threads)
    return w.detach().numpy().astype(np.float64), b.detach().numpy().astype(np.float64)


def _steps(epochs, opt, xt, yt, w, b, quant, weight_decay) -> None:
    import torch

    for _ in range(epochs):
        opt.zero_grad()
        if quant is None:
            wq, bq = w, b
        else:  # straight-through fake quantisation on a fixed grid
            # golden/semantics.py's rule: round half up, saturate to the signed range
            w_scale, b_scale, w_lo, w_hi, b_lo, b_hi = quant
            wq = w + (torch.floor(w * w_scale + 0.5).clamp(w_lo, w_hi) / w_scale - w).detach()
            bq = b + (torch.floor(b * b_scale + 0.5).clamp(b_lo, b_hi) / b_scale - b).detach()
        loss = torch.nn.functional.cross_entropy(xt @ wq.T + bq, yt)
        loss = loss + 0.5 * weight_decay * (w * w).sum()
        loss.backward()
        opt.step()


def train_classifier(feats: np.ndarray, labels: np.ndarray, view_or_manifest, *, epochs: int = 200,
                     seed: int = 0, weight_decay: float = 1e-4, qat_epochs: int = 50,
                     progress: Progress = QUIET) -> dict:
    """
    Train and quantise the NPU classifier on integer features; no files. Returns a dict
    with `weights`, `bias`, `weight_frac`, `classes`, `train_accuracy` (integer weights,
    golden NPU), `float_train_accuracy`.
    """
    view = view_or_manifest
    fx, wb, bb = view.feature_frac, view.weight_bits, view.bias_bits
    used = int(labels.max()) + 1
    # features at their real scale, and a global rescale (a power of two, so exact) that
    # puts them near 1 for the optimiser; the classifier is trained on x_real * 2^s
    x_real = feats.astype(np.float64) * 2.0**-fx
    peak = float(np.abs(x_real).max(initial=0.0))
    s = -int(np.floor(np.log2(peak))) if peak > 0 else 0
    x = x_real * 2.0**s
    w, b = _train(x, labels, used, epochs=epochs, seed=seed, weight_decay=weight_decay, lr=0.05)
    float_acc = float((np.argmax(x @ w.T + b, axis=1) == labels).mean())
    # W_real (on x_real) = w * 2^s
    candidates = []
    w_int, b_int, wf = quantize_classifier(w * 2.0**s, b, fx, wb, bb)
    candidates.append(("post-training", w_int, b_int, wf))
    if qat_epochs > 0:
        # refine on the fixed grid: W_real = w*2^s quantised at 2^-wf means w on 2^-(wf+s)
        quant = (2.0 ** (wf + s), 2.0 ** (fx + wf), -(1 << (wb - 1)), (1 << (wb - 1)) - 1,
                 -(1 << (bb - 1)), (1 << (bb - 1)) - 1)
        wq, bq = _train(x, labels, used, epochs=qat_epochs, seed=seed, weight_decay=weight_decay,
                        lr=0.01, init=(w, b), quant=quant)
        w_int2, b_int2, wf2 = quantize_classifier(wq * 2.0**s, bq, fx, wb, bb, weight_frac=wf)
        candidates.append(("quantisation-aware", w_int2, b_int2, wf2))
    best = None
    for how, w_int, b_int, wf in candidates:
        npu = {"weights": w_int, "bias": b_int}
        _, cls = integer_predict(feats, npu, view.manifest)
        acc = float((cls == labels).mean())
        progress.say(f"{how} quantisation: weight_frac {wf}, train accuracy {100 * acc:.2f} %")
        if best is None or acc > best[0]:
            best = (acc, how, w_int, b_int, wf)
    acc, how, w_int, b_int, wf = best
    return {
        "weights": w_int,
        "bias": b_int,
        "weight_frac": wf,
        "feature_frac": fx,
        "classes": np.arange(used, dtype=np.int64),
        "train_accuracy": acc,
        "float_train_accuracy": float_acc,
        "quantisation": how,
    }


def finetune(design_dir, data, labels, out, *, epochs: int = 200, seed: int = 0,
             weight_decay: float = 1e-4, qat_epochs: int = 50, progress: Progress = QUIET) -> dict:
    """
    Train only the NPU classifier of a compiled design on `data` (float32 NxCxHxW, a .npy
    path or an array) with integer `labels` in [0, NPU classes), and write `out` (W.npz,
    atomically). Returns the trained weights and train accuracies (see train_classifier)
    plus `path`. Nothing is written on error.
    """
    if epochs < 1:
        raise InputError(f"--epochs must be >= 1, got {epochs}")
    out = Path(out)
    if out.is_dir():
        raise InputError(f"'{out}' is a directory, expected a .npz file name")
    view = _DesignView(design_dir)
    images = _images(view, data, "training data")
    y = _labels(labels, len(images), view.classes)
    with progress.step(f"features of {len(images)} images (golden model)"):
        feats = _features_of(view, images)
    with progress.step(f"training the classifier ({int(y.max()) + 1} classes, {view.features} features)"):
        result = train_classifier(feats, y, view, epochs=epochs, seed=seed, weight_decay=weight_decay,
                                  qat_epochs=qat_epochs, progress=progress)
    check_npu_weights(view.module, result)
    with atomic_file(out, binary=True) as stream:
        np.savez(
            stream,
            weights=result["weights"],
            bias=result["bias"],
            weight_frac=np.int64(result["weight_frac"]),
            feature_frac=np.int64(result["feature_frac"]),
            classes=result["classes"],
        )
    result["path"] = out
    print(
        f"wrote {out}: {len(result['classes'])} classes x {view.features} features, "
        f"weight_frac {result['weight_frac']}, train accuracy {100 * result['train_accuracy']:.2f} % "
        f"with the integer weights (float {100 * result['float_train_accuracy']:.2f} %)"
    )
    return result


# ---------------------------------------------------------------------------
# Programming
# ---------------------------------------------------------------------------


def load_image_lines(design_dir, weights) -> list[str]:
    """The lines of the NPU load image for `weights` (a dict or a W.npz path); validated."""
    from hashiflex.passes.to_hw.npu import npu_addr_bits

    view = _DesignView(design_dir)
    npu = weights if isinstance(weights, dict) else load_weights(weights)
    npu = integer_weights(npu)  # exact int64, or an InputError (0.7 is not 0)
    check_npu_weights(view.module, npu)
    m = view.manifest
    words = npu_write_sequence(m, npu)
    addr_bits = npu_addr_bits(view.features, view.classes)
    data_bits = view.bias_bits
    aw, dw = -(-addr_bits // 4), -(-data_bits // 4)
    lines = [
        f"# {LOAD_FORMAT}: NPU weight load image",
        f"# design: {view.name} ({view.design.path if view.design else '-'})",
        f"# NPU: {view.classes} classes x {view.features} features; weights loaded for "
        f"{npu['weights'].shape[0]} classes",
        f"# words: {len(words)}; address bits: {addr_bits}; data bits: {data_bits} "
        f"(weights in the low {view.weight_bits} bits)",
        "# one write per line: <address hex> <data hex> (npu_we, npu_waddr, npu_wdata), "
        "then 'swap' (one npu_swap pulse)",
    ]
    lines += [f"{a:0{aw}x} {d:0{dw}x}" for a, d in words]
    lines.append("swap")
    return lines


def program(design_dir, weights, out, *, progress: Progress = QUIET) -> Path:
    """Write the NPU's load image for `weights` (W.npz or dict) to `out`; returns its path."""

    lines = load_image_lines(design_dir, weights)
    out = Path(out)
    with atomic_file(out) as stream:
        stream.write("\n".join(lines) + "\n")
    progress.say(f"wrote {out}: {len(lines) - 6} writes and a swap")
    return out


def read_load_image(path) -> tuple[list[tuple[int, int]], bool]:
    """Parse a load image: ([(address, data)], ends with swap)."""
    words, swap = [], False
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line == "swap":
            swap = True
            continue
        a, d = line.split()
        words.append((int(a, 16), int(d, 16)))
    return words, swap


# ---------------------------------------------------------------------------
# Demonstration
# ---------------------------------------------------------------------------

DEMO_TASKS = {
    "parity": ("parity (digit mod 2)", lambda y: y % 2),
    "shift3": ("(digit + 3) mod 10", lambda y: (y + 3) % 10),
}


def demo(out: Path | str = "out/finetune", *, task: str = "parity", reuse: bool = False,
         progress: Progress = QUIET) -> dict:
    """
    Compile the digits example once, then run task A (the digits, the weights the design
    was compiled with) and task B (the classifier fine-tuned on the hardened features) on
    the same RTL, each checked bit for bit against the golden model. Returns the figures.
    """
    import time

    from hashiflex import compiler, simulation
    from hashiflex.demo import DEMO_EXAMPLE
    from hashiflex.examples.digits import load_digits_split

    if task not in DEMO_TASKS:
        raise InputError(f"unknown demo task '{task}' (one of {', '.join(DEMO_TASKS)})")
    start = time.perf_counter()
    out = Path(out)
    design_dir = out / "design"
    design = None
    if reuse and (design_dir / "design.json").is_file():
        try:
            design = open_design(design_dir)
        except HashiflexError:
            design = None
    if design is None:
        design = compiler.compile(DEMO_EXAMPLE, design_dir, progress=progress)
    size = design.manifest["input_shape"][1]
    x_train, y_train, x_test, y_test = (t.numpy() for t in load_digits_split(size=size))
    description, relabel = DEMO_TASKS[task]
    np.save(out / "x_train.npy", x_train)
    np.save(out / "x_test.npy", x_test)
    np.save(out / "y_train_B.npy", relabel(y_train))
    figures: dict = {"design": str(design.path), "task_b": description, "test_images": len(x_test)}

    # task A: the classifier the design was compiled with (reset contents of the NPU)
    sim_a = simulation.simulate(design.path, x_test, check=True, progress=progress)
    figures["A"] = {
        "golden_accuracy": float((sim_a.golden_classes == y_test).mean()),
        "rtl_accuracy": float((sim_a.classes == y_test).mean()),
        "bit_exact": f"{sim_a.compared - sim_a.mismatches}/{sim_a.compared}",
    }
    # task B: fine-tune on the hardened features, program, simulate the same RTL
    trained = finetune(design.path, x_train, relabel(y_train), out / "W_B.npz", progress=progress)
    load = program(design.path, out / "W_B.npz", out / "W_B.load", progress=progress)
    yb = relabel(y_test)
    sim_b = simulation.simulate(design.path, x_test, weights=out / "W_B.npz", check=True, progress=progress)
    figures["B"] = {
        "train_accuracy": trained["train_accuracy"],
        "golden_accuracy": float((sim_b.golden_classes == yb).mean()),
        "rtl_accuracy": float((sim_b.classes == yb).mean()),
        "bit_exact": f"{sim_b.compared - sim_b.mismatches}/{sim_b.compared}",
        "weight_frac": trained["weight_frac"],
        "load_image": str(load),
    }
    # A then B in one stream: reload the original weights through the port before the
    # first image, and B once half of the images were accepted; images entering before the
    # swap use A, after it B (the golden model follows the same schedule)
    original = _DesignView(design.path).original_weights()
    half = len(x_test) // 2
    new_weights = {"weights": trained["weights"], "bias": trained["bias"]}
    sim_ab = simulation.simulate(design.path, x_test, weights=original, check=True,
                          writes_mid_stream=[(half * size * size, new_weights)], progress=progress)
    view = _DesignView(design.path)
    feats = _features_of(view, x_test)
    first_b = swap_image(sim_ab.logits, integer_predict(feats, original, view.manifest)[0],
                         integer_predict(feats, new_weights, view.manifest)[0])
    mixed = np.where(np.arange(len(y_test)) < (first_b if first_b is not None else 0), y_test, yb)
    figures["A_then_B"] = {
        "bit_exact": f"{sim_ab.compared - sim_ab.mismatches}/{sim_ab.compared}",
        "swap_requested_after_pixels": half * size * size,
        "first_image_with_B": first_b,
        "rtl_accuracy": float((sim_ab.classes == mixed).mean()),
    }
    figures["ok"] = bool(sim_a.ok and sim_b.ok and sim_ab.ok)
    figures["seconds"] = time.perf_counter() - start
    a, b = figures["A"], figures["B"]
    lines = [
        "",
        f"HaShiFlex fine-tuning demo: {DEMO_EXAMPLE} compiled once ({design.path}), "
        f"{len(x_test)} digits test images",
        f"  task A  digits (compiled weights)  golden {100 * a['golden_accuracy']:6.2f} %   "
        f"RTL {100 * a['rtl_accuracy']:6.2f} %   bit-exact {a['bit_exact']}",
        f"  task B  {description:<25}  golden {100 * b['golden_accuracy']:6.2f} %   "
        f"RTL {100 * b['rtl_accuracy']:6.2f} %   bit-exact {b['bit_exact']}   "
        f"(train {100 * b['train_accuracy']:.2f} %)",
        f"  A then B in one stream (swap requested after {half} images, first B image "
        f"{figures['A_then_B']['first_image_with_B']})  RTL {100 * figures['A_then_B']['rtl_accuracy']:6.2f} %   "
        f"bit-exact {figures['A_then_B']['bit_exact']}",
        f"  same RTL, new weights through the NPU write port: {out / 'W_B.npz'}, {load}",
        f"  total time {figures['seconds']:.0f} s",
    ]
    print("\n".join(lines))
    return figures


def swap_image(logits: np.ndarray, old: np.ndarray, new: np.ndarray) -> int | None:
    """
    The index of the first image whose logits are those of the new weights, given that
    every earlier image has the old weights' logits and every later one the new weights'
    (None if the logits do not split that way). An independent check of the swap point.
    """
    for s in range(len(logits) + 1):
        if np.array_equal(logits[:s], old[:s]) and np.array_equal(logits[s:], new[s:]):
            return s
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m hashiflex.finetune",
        description="Fine-tune the NPU classifier of a compiled design (see docs/finetuning.md).",
    )
    parser.add_argument("--demo", action="store_true", help="the digits demonstration, end to end")
    parser.add_argument("--out", type=Path, default=Path("out/finetune"), help="demo output folder")
    parser.add_argument("--task", default="parity", choices=sorted(DEMO_TASKS), help="demo task B")
    parser.add_argument("--reuse", action="store_true", help="reuse a design already in OUT/design")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    if not args.demo:
        parser.error("nothing to do: use --demo, or `hashiflex finetune` / `hashiflex program`")
    try:
        figures = demo(args.out, task=args.task, reuse=args.reuse,
                       progress=Progress(enabled=not args.quiet))
    except HashiflexError as error:
        print(f"hashiflex finetune --demo: error: {error}", file=sys.stderr)
        sys.exit(2)
    sys.exit(0 if figures["ok"] else 1)


if __name__ == "__main__":
    main()
