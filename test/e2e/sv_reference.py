"""
The SystemVerilog fingerprints that the compile-speed work (issue 12) must keep: for each
configuration in CASES, the sha256 of every rtl/*.sv file (and of constraints.sdc) that
`api.compile` writes. The stored table (fixtures/sv_hashes.json) was computed with the code
before the faster lowering and emitter, by running this file as a script with that code:
first main at d576823, then (po2-cse's incremental pair pool changes the shared terms of a
few layers) the merge of that po2-cse with the old lowering and emitter, b5c1a0f:

    python test/e2e/sv_reference.py test/e2e/fixtures/sv_hashes.json [--slow]

test_sv_reference.py compiles the same configurations with today's code and compares
byte for byte (through the hashes), so a change that alters one character of one module
names the configuration and the file.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

E2E = Path(__file__).resolve().parent
sys.path.insert(0, str(E2E))

import nets  # noqa: E402

NETS_FILE = E2E / "nets.py"

# name -> (spec, compile options); zoo nets get their calibration images.
CASES: dict[str, tuple[str, dict]] = {
    "tiny_cnn": ("tiny_cnn", {}),
    "tiny_cnn_levels1": ("tiny_cnn", {"levels_per_stage": 1}),
    "tiny_cnn_nocse": ("tiny_cnn", {"cse": False}),
    **{f"zoo_{name}": (f"zoo:{name}", {}) for name in nets.ZOO},
    "zoo_dw_residual_ppc2": ("zoo:dw_residual", {"pixels_per_cycle": 2}),
    "zoo_stride2_valid_clock500": ("zoo:stride2_valid", {"clock_mhz": 500.0}),
}
# Too slow for the default tier (about a minute or more each).
SLOW_CASES: dict[str, tuple[str, dict]] = {
    "mobilenetv2_w025": (str(E2E.parents[1] / "benchmarks" / "models.py") + ":mobilenetv2_w025", {}),
}


def compile_case(spec: str, options: dict, out: Path):
    from hashiflex import api

    if spec.startswith("zoo:"):
        name = spec[4:]
        return api.compile(f"{NETS_FILE}:{name}", out, calib=nets.calibration(name), **options)
    return api.compile(spec, out, **options)


def rtl_hashes(design_dir: Path) -> dict[str, str]:
    """sha256 of every file in the design's rtl/ directory, by name."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((design_dir / "rtl").iterdir())}


def case_hashes(name: str, cases: dict, jobs: int = 1) -> dict[str, str]:
    spec, options = cases[name]
    with tempfile.TemporaryDirectory(prefix="sv_reference_") as tmp:
        design = compile_case(spec, {**options, "jobs": jobs}, Path(tmp) / "d")
        return rtl_hashes(design.path)


def main() -> None:
    out = Path(sys.argv[1])
    cases = {**CASES, **(SLOW_CASES if "--slow" in sys.argv else {})}
    table = json.loads(out.read_text()) if out.exists() else {}
    for name in cases:
        table[name] = case_hashes(name, cases)
        print(name, len(table[name]), "files", flush=True)
        out.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
