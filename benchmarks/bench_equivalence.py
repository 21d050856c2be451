"""
Equivalence benchmark: Yosys proves po2-cse-optimised 1x1 layers equal to the naive ones
(--no-cse), and shows a mutated layer (one weight negated) fails, with the time of each
proof (backends/equivalence.py: miter of the two designs, latencies aligned, valid outputs
compared, `sat -tempinduct`). Random layers: codes +-1..+-8, density 0.8, 1x1 input pixel,
unsigned inputs of --in-bits bits, seed 0. Writes benchmarks/results/equivalence.json.

    python benchmarks/bench_equivalence.py [--layers 6x6,8x8] [--in-bits 4] [--timeout 1800]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from _harness import write_results

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))
from po2_testlib import conv_module  # noqa: E402

from hashiflex.backends.equivalence import compiled_sv, prove_equivalent  # noqa: E402
from hashiflex.golden.semantics import Format  # noqa: E402


def layer(codes: np.ndarray, bias: np.ndarray, in_bits: int):
    cout, cin = codes.shape[:2]
    return conv_module((cin, 1, 1), Format(in_bits, False, 2), Format(8, True, 3), codes,
                       exp_base=[0] * cout, bias=bias, act="relu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--layers", default="6x6,8x8", help="cout x cin of each layer")
    parser.add_argument("--in-bits", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    rows = []
    for spec in args.layers.split(","):
        cout, cin = (int(x) for x in spec.split("x"))
        rng = np.random.default_rng(0)
        shape = (cout, cin, 1, 1)
        codes = (rng.integers(1, 9, shape) * rng.choice([-1, 1], shape)
                 * (rng.random(shape) < 0.8)).astype(np.int8)
        bias = rng.integers(-30, 30, cout)
        gold = compiled_sv(layer(codes, bias, args.in_bits), cse=False)
        gate = compiled_sv(layer(codes, bias, args.in_bits), cse=True)
        mutated = codes.copy()
        first = tuple(np.argwhere(mutated != 0)[0])
        mutated[first] = -mutated[first]
        bad = compiled_sv(layer(mutated, bias, args.in_bits), cse=True)
        entry = {"layer": spec, "in_bits": args.in_bits, "adders_naive": gold[2],
                 "adders_cse": gate[2], "latency_naive": gold[1], "latency_cse": gate[1]}
        for name, other in (("cse", gate), ("mutant", bad)):
            try:
                result = prove_equivalent(gold[0], gold[1], other[0], other[1], timeout=args.timeout)
                entry[f"{name}_proven"], entry[f"{name}_seconds"] = result.proven, result.seconds
            except Exception as error:  # a timeout: say so in the table
                entry[f"{name}_proven"], entry[f"{name}_error"] = None, type(error).__name__
        rows.append(entry)
        print(entry, flush=True)
    write_results("equivalence", {"layers": rows})


if __name__ == "__main__":
    main()
