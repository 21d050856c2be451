"""Train the digits examples, quantise them to Po2 (PTQ and QAT), write docs/accuracy.md.

    python -m hashiflex.examples.train_digits [--quick]

Two models on scikit-learn's digits (16x16 bilinear upsampling, fixed stratified 80/20
split, see digits.py): the tiny CNN and MobileNetV2 width 0.25 (CIFAR-style, 1 input
channel). 16x16 is enough: the 8x8 originals hold all the information, and at 16x16 the
stride-8 MobileNetV2 still ends at 2x2 (32x32 would cost 4x the compute for nothing).
Width 0.25 keeps the checkpoints small (the last 1x1 conv to 1280 channels dominates) and
trains in about a minute on 2 cores.

Everything is deterministic: fixed seeds, a fixed torch thread count (``--threads``, default
1: on the shared 2-core machine two OpenMP threads ran these small convs 10x slower under
load, and gain little when idle), deterministic algorithms, deterministic augmentation (random shifts of up to 2 pixels drawn from a seeded generator). PTQ and QAT
accuracies are measured with the *integer* golden model on the exported po2 IR (the
fake-quant model agrees bit for bit, see the tests).

Checkpoints (``examples/checkpoints/``): the float ``state_dict`` (float32) and the QAT
``Po2FakeQuantModel`` state_dict with weights snapped to their quantised values and stored
as bfloat16 (holds every Po2 weight exactly; the other tensors stay float32).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hashiflex.examples import EXAMPLES, DIGITS_SIZE
from hashiflex.examples.digits import load_digits_split
from hashiflex.frontend.quant import (
    QuantizedModel,
    quantize_ptq,
    quantize_qat,
)

SEED = 0
CALIB_IMAGES = 256
DOCS = Path(__file__).resolve().parent.parent / "docs" / "accuracy.md"

# per model: float training and QAT settings
SETTINGS = {
    "tiny_cnn": dict(epochs=40, lr=3e-3, qat_epochs=15, qat_lr=1e-3, distill=0.5),
    "mobilenetv2_digits": dict(epochs=40, lr=3e-3, qat_epochs=15, qat_lr=1e-3, distill=0.5),
}


def shift_augment(x: torch.Tensor, gen: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Shift each image by a random integer (dy, dx) in [-max_shift, max_shift], zero fill."""
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    d = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=gen)
    return torch.stack([padded[i, :, d[i, 0]:d[i, 0] + h, d[i, 1]:d[i, 1] + w]
                        for i in range(n)])


def train_float(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float,
                seed: int, batch_size: int = 64) -> nn.Module:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * math.ceil(len(y) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        total = 0.0
        for s in range(0, len(y), batch_size):
            idx = perm[s:s + batch_size]
            loss = F.cross_entropy(model(shift_augment(x[idx], gen)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if (epoch + 1) % 10 == 0:
            print(f"  epoch {epoch + 1}/{epochs}: loss {total / len(y):.4f}", flush=True)
    return model.eval()


def float_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model.eval()(x).argmax(1) == y).float().mean()) * 100


def int_accuracy(q: QuantizedModel, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((q.predict(x) == y.numpy()).mean()) * 100


def save_qat(q: QuantizedModel, path: Path) -> None:
    """Snap weights to their Po2 values, store conv weights as bfloat16 (exact)."""
    fq = copy.deepcopy(q.fake_quant).float().snap_()
    state = {}
    for key, value in fq.state_dict().items():
        if key.endswith(".weight") and value.dim() == 4:
            value = value.to(torch.bfloat16)
            assert torch.equal(value.float(), fq.state_dict()[key]), key
        state[key] = value
    torch.save(state, path)


def run_model(name: str, data, settings: dict, log: list[str]) -> dict:
    x_train, y_train, x_test, y_test = data
    spec = EXAMPLES[name]
    torch.manual_seed(SEED)
    model = spec.factory()
    t0 = time.time()
    print(f"[{name}] float training ({settings['epochs']} epochs)", flush=True)
    train_float(model, x_train, y_train, settings["epochs"], settings["lr"], SEED)
    t_float = time.time() - t0
    spec.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), spec.checkpoint)
    fp32 = float_accuracy(model, x_test, y_test)

    calib = x_train[:CALIB_IMAGES]
    ptq = quantize_ptq(model, calib, **spec.quant_options)
    acc_ptq = int_accuracy(ptq, x_test, y_test)

    print(f"[{name}] QAT ({settings['qat_epochs']} epochs)", flush=True)
    t1 = time.time()
    qat = quantize_qat(model, calib, (x_train, y_train), epochs=settings["qat_epochs"],
                       lr=settings["qat_lr"], seed=SEED, augment=shift_augment,
                       distill=settings["distill"],
                       log=print, **spec.quant_options)
    t_qat = time.time() - t1
    save_qat(qat, spec.qat_checkpoint)
    acc_qat = int_accuracy(qat, x_test, y_test)
    convs = [l.weight_codes for l in qat.layers if l.name == "po2.conv2d"]
    result = dict(
        model=name, fp32=fp32, ptq=acc_ptq, qat=acc_qat, test_size=len(y_test),
        train_size=len(y_train), float_seconds=round(t_float, 1),
        qat_seconds=round(t_qat, 1),
        conv_weights=int(sum(w.size for w in convs)),
        zero_weights=float(np.mean(np.concatenate([w.ravel() == 0 for w in convs]))),
        checkpoint_bytes=spec.checkpoint.stat().st_size,
        qat_checkpoint_bytes=spec.qat_checkpoint.stat().st_size,
    )
    print(f"[{name}] FP32 {fp32:.2f}  PTQ {acc_ptq:.2f}  QAT {acc_qat:.2f}  "
          f"(float {t_float:.0f}s, QAT {t_qat:.0f}s)", flush=True)
    return result


def write_report(results: list[dict], path: Path) -> None:
    lines = [
        "# Accuracy of the digits examples",
        "",
        "Written by `python -m hashiflex.examples.train_digits` (deterministic: seed "
        f"{SEED}, `torch.set_num_threads({torch.get_num_threads()})`).",
        "",
        f"Data: scikit-learn digits, 8x8 upsampled bilinearly to {DIGITS_SIZE}x{DIGITS_SIZE}, "
        "values in [0, 1], stratified 80/20 split with `random_state=0` "
        f"({results[0]['train_size']} train / {results[0]['test_size']} test images).",
        "Quantisation: Po2 weights (sign + 3-bit exponent index per output channel, BN "
        "folded), 8-bit activations with per-tensor Po2 scales calibrated on the first "
        f"{CALIB_IMAGES} training images, 8-bit NPU classifier weights, 24-bit bias "
        "(docs/semantics.md). PTQ and QAT accuracies are measured with the integer "
        "executor on the exported layer records.",
        "",
        "| model | conv weights | FP32 | Po2 PTQ | Po2 QAT | test images | seed | "
        "train time (float + QAT) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['model']} | {r['conv_weights']:,} | {r['fp32']:.2f} % | {r['ptq']:.2f} % | "
            f"{r['qat']:.2f} % | {r['test_size']} | {SEED} | "
            f"{r['float_seconds']:.0f} s + {r['qat_seconds']:.0f} s |")
    lines += [
        "",
        "Training: AdamW (weight decay 1e-4), one-cycle learning rate, batch 64, random "
        "shifts of up to 2 pixels, 40 epochs, peak lr 3e-3. QAT: from the PTQ model (BN "
        "folded, activation scales frozen), 15 epochs of Adam (lr 1e-3, cosine schedule), "
        "straight-through gradients, same augmentation, loss = 0.5 cross-entropy + 0.5 "
        "distillation from the FP32 model (T = 2).",
        "",
        "PTQ is poor: rounding every weight to the nearest power of "
        "two (errors up to a factor sqrt(2)) compounds through the layers, and BN folding "
        "leaves no per-channel gain to absorb it; QAT recovers it.",
        "",
        "| model | float checkpoint | QAT checkpoint | zero Po2 weights after QAT |",
        "|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['model']} | {r['checkpoint_bytes'] / 1024:.0f} KiB | "
                     f"{r['qat_checkpoint_bytes'] / 1024:.0f} KiB | "
                     f"{100 * r['zero_weights']:.1f} % |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(SETTINGS))
    parser.add_argument("--report", type=Path, default=DOCS)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    data = load_digits_split(DIGITS_SIZE, SEED)
    results = [run_model(name, data, SETTINGS[name], []) for name in args.models]
    write_report(results, args.report)
    (EXAMPLES[args.models[0]].checkpoint.parent / "accuracy.json").write_text(
        json.dumps(results, indent=1))
    print(f"wrote {args.report}")


if __name__ == "__main__":
    main()
