"""
Multicycle trees where the rate allows (issue 10, passes/to_hw/multicycle.py), end to end on
nets.slow_tail: after its stride-2 stem the items come every >= 2 cycles, after the second
stride-2 layer every >= 4, so its later convs (pointwise and depthwise) get unpipelined
trees sampled N <= k cycles after their held inputs. The RTL stays bit-exact in Verilator,
the measured latency and cycles per image are the report's, `rtl/constraints.sdc` names
exactly those layers, and `--jobs 2` (the workers get the input gaps from the parent)
writes the same files.
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import NETS_FILE

import nets
from hashiflex import api

NET = "slow_tail"


@pytest.fixture(scope="module")
def designs_of(designs, tmp_path_factory):
    """The session's one-process design (default 1000 MHz target) and a two-worker one."""
    root = tmp_path_factory.mktemp("multicycle")
    parallel = api.compile(f"{NETS_FILE}:{NET}", root / "parallel", calib=nets.calibration(NET),
                           jobs=2, emit_hw_ir=True)
    return designs.zoo(NET), parallel


def multicycle_layers(design) -> dict[str, dict]:
    return {l["name"]: l for l in design.report["layers"] if "multicycle_cycles" in l}


def test_slow_convs_are_multicycle(designs_of):
    design, _ = designs_of
    layers = {l["name"]: l for l in design.report["layers"]}
    multi = multicycle_layers(design)
    # the stem sees a pixel every cycle; the 4x4 layers one every >= 4 (a 4x4 raster of
    # the 16x16 input: 4 input pixels apart along a row)
    assert "stem" not in multi
    assert {"pw2", "pw3"} <= set(multi) and layers["pw2"]["input_interval_cycles"] == 4
    assert any(l["kernel"] == [3, 3] for l in multi.values()), "no windowed multicycle layer"
    for name, layer in multi.items():
        n, k = layer["multicycle_cycles"], layer["input_interval_cycles"]
        assert 2 <= n <= k, name
        # 1 (the held input registers) + N (settle, then the sample register's output)
        assert layer["pipeline_stages"] == 1 + n, name
    # the SDC declares exactly those layers' paths, setup N and hold N-1
    sdc = (design.path / "rtl" / "constraints.sdc").read_text()
    setups = re.findall(r"set_multicycle_path -setup (\d+) -from \[get_cells "
                        r"-hierarchical \{(\w+?)_line_buf_\*", sdc)
    assert {module: int(n) for n, module in setups} == \
        {l["module"]: l["multicycle_cycles"] for l in multi.values()}
    assert sdc.count("set_multicycle_path -hold") == len(multi)


def test_multicycle_rtl_bit_exact_with_reported_timing(designs_of):
    design, _ = designs_of
    result = api.simulate(design.path, nets.stimulus(NET), check=True)
    assert result.ok and result.compared == len(nets.stimulus(NET))
    assert result.cycles_per_image == design.report["cycles_per_image"]
    assert result.latency_cycles == design.report["latency_cycles"]
    assert result.stalls == 0


def test_jobs_build_the_same_multicycle_layers(designs_of):
    serial, parallel = designs_of
    names = sorted(p.name for p in (serial.path / "rtl").iterdir())
    assert names == sorted(p.name for p in (parallel.path / "rtl").iterdir())
    for name in names:
        assert (serial.path / "rtl" / name).read_bytes() == \
            (parallel.path / "rtl" / name).read_bytes(), name
    assert json.loads((serial.path / "report.json").read_text())["layers"] == \
        json.loads((parallel.path / "report.json").read_text())["layers"]


def test_verify_paces_modules_that_rely_on_held_inputs(designs_of):
    """`hashiflex verify` runs each module alone: a conv relying on its input gap k gets a
    beat every k cycles (back to back, a multicycle layer would show a later item's
    result), and takes k times its input beats per image."""
    from hashiflex import verify

    design, _ = designs_of
    images = nets.stimulus(NET)[:2]
    # a pointwise and a windowed multicycle conv, and the full-rate stem
    summary = verify.verify(design.path, images, modules=["stem", "dw1", "pw2"], jobs=2,
                            progress=False)
    assert summary["differ"] == [] and summary["verified"] == summary["total"] == 3
    rows = {r["module"]: r for r in summary["modules"]}
    gaps = {l["module"]: l.get("input_interval_cycles", 1) for l in design.report["layers"]}
    assert gaps["pw2"] == 4 and gaps["dw1"] == 2 and gaps["stem"] == 1
    for name, row in rows.items():
        assert row["cycles_per_image"] == row["report_cycles_per_image"], name
    assert rows["pw2"]["cycles_per_image"] == 16 * 4  # a 4x4 input, one beat every 4 cycles
