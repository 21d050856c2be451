"""
The zoo (nets.py) at several pixels per cycle, in the hw simulator (interpreters/hw.py,
cycle by cycle, no Verilator: seconds per net): images streamed back to back, P pixels per
beat (the last beat of a row partial where P does not divide the width), every logit equal
to the golden model, the measured cycles per image and latency equal to the report's, the
NPU never stalling. Then every zoo net (nets.py and the pooling nets of pool_nets.py) at
P=2 and P=4 in Verilator: RTL == golden == po2 interpreter, measured cycles per image and
latency equal to the report (the smallest pooling net at P=4 in the default tier, the rest
slow).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import NETS_FILE

import nets
import pool_nets
from hashiflex import api
from hashiflex.dialects import po2
from hashiflex.golden import model as golden_model
from hashiflex.golden.semantics import Format, quantize_input
from hashiflex.importing import import_model
from hashiflex.interpreters.hw import HwSimulator, run_stream
from hashiflex.packing import pack_beats, split_fields
from hashiflex.passes.to_hw import design_report
from hashiflex.passes.to_hw.rates import cycles_per_image
from test_pool_act_flow import POOL_NETS_FILE
from test_pool_act_flow import calibration as pool_calibration
from test_pool_act_flow import stimulus as pool_stimulus



def zoo_net(name: str, n_random: int | None = None) -> tuple[str, np.ndarray, np.ndarray]:
    """(spec, calibration, stimulus) of a net of nets.py or pool_nets.py."""
    if name in pool_nets.POOL_ZOO:
        return f"{POOL_NETS_FILE}:{name}", pool_calibration(name), pool_stimulus(name)
    images = nets.stimulus(name) if n_random is None else nets.stimulus(name, n_random=n_random)
    return f"{NETS_FILE}:{name}", nets.calibration(name), images


#: (net, P): odd widths (15, 11, 7, 9, 13) with partial last beats, strides 1 and 2,
#: residuals, row buffers (stride2_valid at 4 and 8: 2 and 4 copies -> 1 and 2 lanes), the
#: lane widener (stride2_valid at 3), windowed max/avg pooling (pool_mix at 3: 3 lanes
#: through every pooling layer; at 4: a row buffer after its 2x2/2 max pooling), beats of
#: whole rows (slow_tail, 16x16, at 32 and 64: 2 and 4 rows per beat into its 3x3 s2 stem,
#: then one 8-wide row, or 2 rows into the residual block); the default tier runs seven, the
#: rest are `slow`
FAST = [("separable_1d", 2), ("stride2_valid", 4), ("mb_block_no_bn", 4), ("stride2_valid", 8),
        ("pool_mix", 3), ("pool_mix", 4), ("slow_tail", 64)]
SLOW = [("dw_residual", 2), ("dw_residual", 4), ("k5_asym_pad", 2), ("k5_asym_pad", 4),
        ("stride2_valid", 2), ("requant_two_residuals", 4), ("top_left_pad", 2),
        ("stride2_valid", 3), ("maxpool_leaky", 2), ("avgpool_hardtanh", 4), ("slow_tail", 32)]
CASES = FAST + [pytest.param(*case, marks=pytest.mark.slow) for case in SLOW]


@pytest.mark.parametrize("name,p", CASES)
def test_zoo_at_pixels_per_cycle(name, p):
    spec, calib, images = zoo_net(name, n_random=2)
    module, _ = import_model(spec, calib=calib)
    fn = next(iter(module.ops))
    in_t = fn.args[0].type
    x_int = quantize_input(images, Format(in_t.fmt.bits, in_t.fmt.signed, in_t.fmt.frac))
    want = golden_model.run_int(module, x_int)
    logit_bits = next(op for op in module.walk() if isinstance(op, po2.NpuLinearOp)).output.type.fmt.bits
    api.lower_to_hw(module, pixels_per_cycle=p)
    report = api.build_report(design_report(module), 1000.0)
    _, h, w = in_t.dims
    assert report["pixels_per_cycle"] == p
    assert report["pipeline_cycles_per_image"] == cycles_per_image(h, w, p)
    assert not report["npu_is_bottleneck"]
    sim = HwSimulator(module)
    records = run_stream(sim, pack_beats(x_int, in_t.fmt.bits, p), drain_outputs=len(images))
    names = [port.name for port in sim.output_ports if port.name not in ("out_valid", "in_ready")]
    classes = want.shape[1]
    got = np.array([split_fields(r[1][names.index("out_logits")], classes, logit_bits)
                    for r in records[:len(images)]])
    assert np.array_equal(got, want), f"{name} at P={p}: RTL logits differ from golden"
    cycles = [r[0] for r in records[:len(images)]]
    assert set(np.diff(cycles).tolist()) == {report["cycles_per_image"]}
    assert cycles[0] == report["latency_cycles"]  # run_stream counts from the first beat



#: every zoo net at P=2 and P=4 (the widths: 15, 11, 7, 9, 13, 8, 10 and 4; the odd ones end
#: their rows with a partial beat), plus the row buffer at P=8 and the lane widener at P=3
#: (stride2_valid), whole rows per beat at 32 and 64 (slow_tail); in the default tier only
#: the smallest pooling net at P=4 (lanes into its max pooling, a row buffer after it,
#: partial beats): each case is one Verilator build of its own design (~20-50 s on a loaded
#: 2-core machine)
VERILATOR_FAST = [("pool_mix", 4)]
VERILATOR_SLOW = [(name, p) for name in [*nets.ZOO, *pool_nets.POOL_ZOO] for p in (2, 4)
                  if (name, p) not in VERILATOR_FAST] + [
    ("stride2_valid", 8), ("stride2_valid", 3), ("slow_tail", 32), ("slow_tail", 64)]


@pytest.mark.parametrize("name,p", VERILATOR_FAST + [
    pytest.param(*case, marks=pytest.mark.slow) for case in VERILATOR_SLOW])
def test_zoo_at_pixels_per_cycle_in_verilator(name, p, tmp_path):
    """`hashiflex compile --pixels-per-cycle P` + `simulate --check` in Verilator: RTL ==
    golden == the po2 interpreter on the design's IR, timing equal to the report."""
    from hashiflex.golden.model import input_type
    from hashiflex.interpreters.po2 import run_po2
    from hashiflex.design_dir import parse_ir

    spec, calib, images = zoo_net(name)
    design = api.compile(spec, tmp_path / "design", pixels_per_cycle=p, calib=calib)
    assert design.report["pixels_per_cycle"] == p
    result = api.simulate(design.path, images, check=True)
    assert result.compared == len(images) and result.ok, f"{name} at P={p}: {result.mismatches}"
    assert result.cycles_per_image == design.report["cycles_per_image"]
    assert result.latency_cycles == design.report["latency_cycles"]
    assert result.stalls == 0
    module = parse_ir(design.file("po2"))
    np.testing.assert_array_equal(
        run_po2(module, quantize_input(images, input_type(module).fmt)), result.golden_logits)
