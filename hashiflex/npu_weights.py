"""
The NPU's weights as files and port writes: loading a weights .npz, checking it against
the NPU built into a design (shape, number ranges), and the (address, data) write sequence
that loads it through the NPU's write port (docs/microarchitecture.md has the memory map).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hashiflex.errors import DesignError, InputError


INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def integer_array(values, what: str) -> np.ndarray:
    """
    `values` as int64, exactly or not at all: an integer dtype within int64, or floats that
    are all finite and integral. 0.7 is not silently 0, uint64 2^64-1 not -1, and complex
    numbers (whose imaginary part would be dropped), booleans and strings are refused.
    """
    array = np.asarray(values)
    kind = array.dtype.kind
    if kind == "u":
        if array.size and int(array.max()) > INT64_MAX:
            raise InputError(f"{what} holds {int(array.max())}, beyond int64")
        return array.astype(np.int64)
    if kind == "i":
        return array.astype(np.int64)
    if kind == "f":
        if not np.isfinite(array).all():
            raise InputError(f"{what} holds NaN or infinite values; NPU weights are integers")
        if array.size and (array != np.round(array)).any():
            bad = array[array != np.round(array)].flat[0]
            raise InputError(f"{what} holds {bad!r}, not an integer; NPU weights are integers "
                             "(as `hashiflex finetune` writes them)")
        if array.size and not (INT64_MIN <= array.min() and array.max() < 2.0 ** 63):
            raise InputError(f"{what} holds values beyond int64")
        return array.astype(np.int64)
    raise InputError(f"{what} holds {array.dtype} values; NPU weights are integers")


def integer_weights(npu: dict, what: str = "NPU") -> dict:
    """A weights dict with `weights` and `bias` as exact int64 arrays (other keys kept)."""
    missing = [k for k in ("weights", "bias") if k not in npu]
    if missing:
        raise InputError(f"{what} weights lack {', '.join(missing)}")
    return {**npu, "weights": integer_array(npu["weights"], f"{what} weights"),
            "bias": integer_array(npu["bias"], f"{what} bias")}


def load_weights(path: Path | str) -> dict:
    """
    An NPU weights .npz (arrays `weights`, `bias`, as `finetune` writes), as int64, with its
    scalars `weight_frac` and `feature_frac` when present (ints).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"weights file '{path}' does not exist")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("it is a single array (.npy), not an .npz archive")
        with data:
            npu = {"weights": data["weights"], "bias": data["bias"]}
            for key in ("weight_frac", "feature_frac"):
                if key in data.files:
                    value = data[key]
                    if value.shape != () or value.dtype.kind not in "iu" or abs(int(value)) > 1024:
                        raise ValueError(f"'{key}' is not a small integer scalar")
                    npu[key] = int(value)
    except (KeyError, ValueError, OSError, EOFError) as error:
        message = " ".join(str(error).split())[:200]
        raise InputError(f"'{path}' is not an NPU weights file (arrays 'weights', 'bias'): {message}")
    except Exception as error:  # a truncated or corrupt archive (zipfile.BadZipFile, ...)
        raise InputError(f"'{path}' is not a readable .npz archive: {type(error).__name__}: {error}")
    return integer_weights(npu, f"'{path}':")


def logits_frac(module, npu: dict | None) -> int:
    """
    The scale 2^-frac of the logits: the design's, or with loaded weights the features'
    scale plus the weights' own `weight_frac` (fine-tuned weights may have another).
    """
    op = npu_op(module)
    design_frac = op.output.type.fmt.frac
    if npu is None or "weight_frac" not in npu:
        return design_frac
    feature_frac = op.input.type.fmt.frac
    if "feature_frac" in npu and npu["feature_frac"] != feature_frac:
        raise InputError(
            f"the weights were trained on features at scale 2^-{npu['feature_frac']}; this "
            f"design's NPU takes features at 2^-{feature_frac}"
        )
    return feature_frac + npu["weight_frac"]


def check_npu_weights(module, npu: dict) -> None:
    """Weights must fit the NPU built into the design: shape and number range."""
    from hashiflex.golden.semantics import type_range

    op = npu_op(module)
    if op is None:
        raise DesignError("the design has no NPU classifier")
    n, k = op.weight_matrix.shape
    for key in ("weights", "bias"):
        if np.asarray(npu[key]).dtype.kind not in "iu":
            raise InputError(f"NPU {key} hold {np.asarray(npu[key]).dtype} values; expected integers "
                             "(hashiflex.npu_weights.integer_weights converts exactly or refuses)")
    w, b = np.asarray(npu["weights"]), np.asarray(npu["bias"])
    if w.ndim != 2 or w.shape[1] != k or not 1 <= w.shape[0] <= n:
        raise InputError(
            f"NPU weights have shape {list(w.shape)}; the NPU takes [classes <= {n}, features {k}], at least one class"
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
