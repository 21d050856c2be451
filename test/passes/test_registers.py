"""Register rules of the to_hw builder: wiring bits are never registered, the delay model
places fewer registers for a slower clock, multicycle constraints (issues 9 and 10)."""

from xdsl.dialects.builtin import IntegerType, i1
from xdsl.ir import Block

from hashiflex.passes.to_hw import delay
from hashiflex.passes.to_hw.builder import HwBuilder, Sig
from hashiflex.passes.to_hw.multicycle import sdc_text, settle_cycles


def _builder(*widths: int) -> tuple[HwBuilder, list]:
    block = Block(arg_types=[i1, *(IntegerType(w) for w in widths)])
    return HwBuilder(block, block.args[0]), list(block.args[1:])


def test_delay_registers_neither_shift_zeros_nor_sign_copies():
    hb, (x,) = _builder(8)
    wide = hb.sext(hb.shl_const(x, 4), 16)  # 4 sign copies, 8 live bits, 4 zeros
    delayed = hb.delay(wide, 2)
    assert hb.stats.register_bits == 2 * 8  # only the live bits, per cycle
    assert delayed.type == wide.type
    # a single sign bit (sext by one) reuses the delayed value's top bit
    hb2, (y,) = _builder(8)
    hb2.delay(hb2.sext(y, 9), 1)
    assert hb2.stats.register_bits == 8


def test_stage_of_shifted_term_keeps_its_zeros_unregistered():
    hb, (x,) = _builder(8)
    s = hb.shl_sig(Sig(x, False, 0, 255, depth=1), 3)
    staged = hb.stage(s)
    assert hb.stats.register_bits == 8 and staged.zeros == 3 and staged.lat == 1


def test_delay_model_fewer_levels_for_wider_carries_more_for_slower_clocks():
    for mhz in (400, 1000):
        levels = [delay.levels_per_stage(mhz, w) for w in range(8, 40)]
        assert levels == sorted(levels, reverse=True) and min(levels) >= 1
    for w in (8, 16, 24, 32):
        assert delay.levels_per_stage(400, w) > delay.levels_per_stage(1000, w)
    # measured: 2-3 levels of tiny_cnn's trees meet about 1 GHz
    assert delay.levels_per_stage(1000, 16) in (2, 3)



def test_delay_model_covers_its_measured_stages():
    # Every measured Po2 stage is predicted at least as slow as it measured (the model is
    # an upper bound), so the stages that missed 1 GHz (down_0, head_0: 3 levels at 16-17
    # bit carries) are no longer planned at 1000 MHz.
    for module, levels, carry_width, measured_ns in delay.PO2_STAGE_CALIBRATION:
        assert delay.adder_path_ns(levels, carry_width) >= measured_ns - 1e-9, module
    assert delay.levels_per_stage(1000, 16) < 3 and delay.levels_per_stage(1000, 17) < 3

def test_levels_override_and_carry_width():
    hb, (x,) = _builder(8)
    hb.levels_per_stage = 0
    narrow = hb.levels_for(hb.carry_width(hb.shl_sig(Sig(x, False, 0, 255), 12)))
    assert narrow == delay.levels_per_stage(1000, 8)  # 20 bits wide, 8 of them carry
    hb.levels_per_stage = 5
    assert hb.levels_for(30) == 5


def test_multicycle_constraints():
    assert settle_cycles(1, 8, 1000) == 1 and settle_cycles(12, 24, 1000) > 1
    text = sdc_text([{"module": "pw", "multicycle_cycles": 3, "input_interval_cycles": 4},
                     {"module": "other"}])
    assert "set_multicycle_path -setup 3" in text and "set_multicycle_path -hold 2" in text
    assert "pw_line_buf_*" in text and "pw_mc_sample*" in text and "other" not in text


def test_item_gap_includes_the_next_image():
    from hashiflex.passes.to_hw.multicycle import item_gap

    assert item_gap([0, 2, 4], 6) == 2  # the next image's item 0 is 2 after item 4
    assert item_gap([1, 3, 14], 16) == 2  # 14 -> 17 (the next image's 1) is 3
    assert item_gap([15], 16) == 16  # one item per image (global pooling)


def test_stream_intervals_of_a_residual_net_behind_strides():
    """The gaps of e2e's slow_tail (1x16x16, 3x3 s2 stem, residual dw+pw at 8x8, dw s2 to
    4x4, pointwise and depthwise): strides multiply them, the residual add keeps them (the latency spread
    of its branches, which hid every layer behind a residual block, plays no part)."""
    from pathlib import Path

    import numpy as np
    from xdsl.dialects import func

    from hashiflex import api
    from hashiflex.passes.to_hw import NetworkLowering

    nets = Path(__file__).parents[1] / "e2e" / "nets.py"
    calib = np.random.default_rng(0).random((8, 1, 16, 16), dtype=np.float32)
    module, _ = api.import_model(f"{nets}:slow_tail", calib=calib)
    fn = next(op for op in module.ops if isinstance(op, func.FuncOp))
    net = NetworkLowering(fn, levels_per_stage=0)
    gaps = {op.properties["layer"].data: net.options.intervals[op.results[0]]
            for op in net.layers() if "layer" in op.properties}
    assert net.options.intervals[fn.args[0]] == 1
    assert gaps["stem"] == 2 and gaps["dw1"] == 2 and gaps["pw1"] == 2
    assert gaps["dw2"] == 4 and gaps["pw2"] == 4 and gaps["dw3"] == 4 and gaps["pw3"] == 4
    assert min(v for k, v in gaps.items() if k.startswith("add")) == 2


def test_estimated_fmax_of_a_multicycle_layer_counts_its_periods():
    from hashiflex.estimate import estimate_module

    layer = {"module": "pw", "kind": "conv", "register_bits": 100, "comb_adder_levels": 9}
    single = estimate_module("pw", {"adder_bits": 400, "max_adder_width": 20},
                             {"layers": [layer]})
    multi = estimate_module("pw", {"adder_bits": 400, "max_adder_width": 20},
                            {"layers": [dict(layer, multicycle_cycles=3)]})
    assert multi["critical_path_ns"] == single["critical_path_ns"]  # the whole path
    assert multi["fmax_mhz"] == round(3 * 1000.0 / single["critical_path_ns"], 1)
    assert multi["multicycle_cycles"] == 3 and "multicycle_cycles" not in single
