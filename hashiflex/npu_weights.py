"""
The NPU's weights as files and port writes: loading a weights .npz, checking it against
the NPU built into a design (shape, number ranges), and the (address, data) write sequence
that loads it through the NPU's write port (docs/microarchitecture.md has the memory map).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hashiflex.errors import DesignError, InputError


def load_weights(path: Path | str) -> dict:
    """An NPU weights .npz (arrays `weights`, `bias`, as `finetune` writes), as int64."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"weights file '{path}' does not exist")
    try:
        data = np.load(path, allow_pickle=False)
        return {"weights": data["weights"].astype(np.int64), "bias": data["bias"].astype(np.int64)}
    except (KeyError, ValueError, OSError) as error:
        raise InputError(f"'{path}' is not an NPU weights file (arrays 'weights', 'bias'): {error}")


def check_npu_weights(module, npu: dict) -> None:
    """Weights must fit the NPU built into the design: shape and number range."""
    from hashiflex.golden.semantics import type_range

    op = npu_op(module)
    if op is None:
        raise DesignError("the design has no NPU classifier")
    n, k = op.weight_matrix.shape
    w, b = npu["weights"], npu["bias"]
    if w.ndim != 2 or w.shape[1] != k or w.shape[0] > n:
        raise InputError(
            f"NPU weights have shape {list(w.shape)}; the NPU takes [classes <= {n}, features {k}]"
        )
    if b.shape != (w.shape[0],):
        raise InputError(f"NPU bias has shape {list(b.shape)}; expected [{w.shape[0]}]")
    w_lo, w_hi = type_range(op.weight_bits, True)
    b_lo, b_hi = type_range(op.bias_bits, True)
    if w.min() < w_lo or w.max() > w_hi:
        raise InputError(
            f"an NPU weight lies outside the {op.weight_bits}-bit range [{w_lo}, {w_hi}]"
        )
    if b.min() < b_lo or b.max() > b_hi:
        raise InputError(
            f"an NPU bias lies outside the {op.bias_bits}-bit range [{b_lo}, {b_hi}]"
        )


def npu_op(module):
    """The po2.npu_linear classifier of a layer-level network, or None."""
    from hashiflex.dialects import po2

    ops = [op for op in module.walk() if isinstance(op, po2.NpuLinearOp)]
    return ops[0] if ops else None


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
