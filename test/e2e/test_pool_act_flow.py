"""
End to end for windowed pooling and the activations beyond ReLU (issue 13): the networks of
pool_nets.py (odd sizes, padding, ceil_mode, max pooling 3x3/2, average pooling 2x2 and
3x3, LeakyReLU, Hardtanh, a 1x1 conv + global pooling classifier) compiled and simulated in
Verilator on random and extreme images. The whole ladder must agree bit for bit: torch
fake-quant (float64) == golden == po2 interpreter (layer level and
unrolled) == RTL; measured timing equals the report; the SystemVerilog is lint-clean.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import pool_nets
from hashiflex import api

POOL_NETS_FILE = Path(__file__).resolve().parent / "pool_nets.py"


def calibration(name: str, n: int = 64) -> np.ndarray:
    factory, kind = pool_nets.POOL_ZOO[name]
    x = np.random.default_rng(0).random((n, *factory().input_shape), dtype=np.float32)
    return 2 * x - 1 if kind == "signed" else x


def stimulus(name: str) -> np.ndarray:
    factory, kind = pool_nets.POOL_ZOO[name]
    shape = factory().input_shape
    x = np.random.default_rng(1).random((5, *shape), dtype=np.float32) * 1.25
    if kind == "signed":
        x = 2 * x - 1.25
    return np.concatenate([x, np.full((1, *shape), 1e6, np.float32),
                           np.full((1, *shape), -1e6, np.float32),
                           np.zeros((1, *shape), np.float32)])


@pytest.fixture(scope="module", params=[
    name if name in pool_nets.POOL_DEFAULT else pytest.param(name, marks=pytest.mark.slow)
    for name in pool_nets.POOL_ZOO])
def run(request, tmp_path_factory):
    name = request.param
    design = api.compile(f"{POOL_NETS_FILE}:{name}", tmp_path_factory.mktemp(name) / "d",
                         calib=calibration(name))
    images = stimulus(name)
    return name, design, images, api.simulate(design.path, images, check=True)


def test_rtl_equals_golden_and_report(run):
    name, design, images, result = run
    assert result.compared == len(images) and result.ok, f"{name}: {result.mismatches} differ"
    assert result.cycles_per_image == design.report["cycles_per_image"]
    assert result.latency_cycles == design.report["latency_cycles"]
    kinds = {layer["kind"] for layer in design.report["layers"]}
    expected = {"maxpool_leaky": {"maxpool2d", "leaky_relu"},
                "avgpool_hardtanh": {"avgpool2d", "clamp"},
                "pool_mix": {"maxpool2d", "avgpool2d", "leaky_relu", "clamp"}}[name]
    assert expected <= kinds and "npu" in kinds


def test_sv_is_lint_clean(run):
    from hashiflex.backends.verilator import lint

    _, design, _, _ = run
    sv = [design.path / f for f in design.manifest["files"]["sv"]]
    assert lint(sv, design.manifest["top"]) == []


def test_fake_quant_and_interpreters_equal_golden(run):
    from hashiflex.golden.model import input_type
    from hashiflex.golden.semantics import quantize_input
    from hashiflex.interpreters.po2 import run_po2
    from hashiflex.passes.po2_canonicalize import Po2CanonicalizePass
    from hashiflex.passes.po2_infer_widths import Po2InferWidthsPass
    from hashiflex.passes.po2_unroll import Po2UnrollPass
    from hashiflex.tools.registry import make_context

    name, _, images, result = run
    module, quantized = api.import_model(f"{POOL_NETS_FILE}:{name}", calib=calibration(name))
    fq = quantized.fake_quant.double().eval()
    with torch.no_grad():
        logits = fq(torch.from_numpy(images).double()).numpy() * 2.0 ** quantized.logits_frac
    np.testing.assert_array_equal(logits, result.golden_logits.astype(np.float64))
    x_int = quantize_input(images, input_type(module).fmt)
    np.testing.assert_array_equal(quantized.run_int(images), result.golden_logits)
    np.testing.assert_array_equal(run_po2(module, x_int), result.golden_logits)
    ctx = make_context()
    for pass_ in (Po2UnrollPass(), Po2CanonicalizePass(), Po2InferWidthsPass()):
        pass_.apply(ctx, module)
    module.verify()
    np.testing.assert_array_equal(run_po2(module, x_int), result.golden_logits)
