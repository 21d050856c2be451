"""
Accuracy benchmark of Po2 quantisation on the digits examples (issue 8): float, PTQ with
nearest rounding, PTQ with adaptive rounding (the default), and QAT through `hashiflex train`,
all measured on the fixed 360-image test split with the integer executor. Times are wall
seconds on this (shared) machine. Writes benchmarks/results/accuracy.json.

    python benchmarks/bench_accuracy.py [--models tiny_cnn,mobilenetv2_digits] [--epochs 5]

`train` gets the 1437 training images and holds out 20 % of them for its own validation
(best epoch); the checkpoint is then imported as a SPEC and scored on the test split.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _harness import write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="tiny_cnn,mobilenetv2_digits")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from hashiflex import api, train
    from hashiflex.examples import load_example
    from hashiflex.examples.digits import load_digits_split
    from hashiflex.frontend.quant import quantize_ptq

    x_train, y_train, x_test, y_test = load_digits_split(16)
    calib = x_train[:256]
    rows = []
    for name in args.models.split(","):
        model = load_example(name)
        with torch.no_grad():
            fp32 = float((model(x_test).argmax(1) == y_test).float().mean()) * 100
        row = dict(model=name, fp32=fp32, test_images=len(y_test))
        for method in ("nearest", "adaround"):
            start = time.perf_counter()
            q = quantize_ptq(model, calib, ptq=method)
            row[f"ptq_{method}_seconds"] = time.perf_counter() - start
            row[f"ptq_{method}"] = float((q.predict(x_test) == y_test.numpy()).mean()) * 100
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = Path(tmp) / f"{name}.pt"
            result = train.train(name, x_train.numpy(), y_train.numpy(), ckpt,
                                 epochs=args.epochs, lr=args.lr, seed=0)
            _, quantized = api.import_model(str(ckpt))
        row.update(qat=float((quantized.predict(x_test) == y_test.numpy()).mean()) * 100,
                   qat_val=result.po2_accuracy, qat_best_epoch=result.best_epoch,
                   train_seconds=result.seconds, qat_epochs=args.epochs, qat_lr=args.lr)
        rows.append(row)
        print(f"{name}: float {fp32:.2f}  PTQ nearest {row['ptq_nearest']:.2f}  "
              f"PTQ adaround {row['ptq_adaround']:.2f} ({row['ptq_adaround_seconds']:.0f} s)  "
              f"QAT {row['qat']:.2f} (train {row['train_seconds']:.0f} s)", flush=True)
    write_results("accuracy", {"runs": rows})


if __name__ == "__main__":
    main()
