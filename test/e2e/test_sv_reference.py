"""
The SystemVerilog stays byte-identical to main at d576823 (issue 12: the faster lowering
and emitter must not change one character; the RTL verification of that SV carries over).
Each configuration of sv_reference.CASES is compiled with today's code and the sha256 of
every rtl/ file compared with the table computed from d576823's code
(fixtures/sv_hashes.json, see sv_reference.py); one configuration also with two worker
processes. A mismatch names the configuration and the files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sv_reference

REFERENCE = json.loads((Path(__file__).parent / "fixtures" / "sv_hashes.json").read_text())

# The default tier: convs, depthwise, residual, pooling, NPU, multicycle trees, two pixels
# per cycle, two workers; the rest (other nets and options) are slow.
DEFAULT = {"tiny_cnn", "zoo_dw_residual_ppc2", "zoo_slow_tail"}


def _params(cases):
    return [name if name in DEFAULT else pytest.param(name, marks=pytest.mark.slow)
            for name in cases]


def _check(name: str, got: dict[str, str]) -> None:
    want = REFERENCE[name]
    differ = sorted(f for f in set(want) | set(got) if want.get(f) != got.get(f))
    assert not differ, f"{name}: files differ from main at d576823: {differ}"


@pytest.mark.parametrize("name", _params(sv_reference.CASES))
def test_sv_is_byte_identical_to_the_reference(name):
    _check(name, sv_reference.case_hashes(name, sv_reference.CASES))


def test_two_jobs_give_the_reference_sv():
    _check("zoo_dw_residual", sv_reference.case_hashes("zoo_dw_residual", sv_reference.CASES,
                                                       jobs=2))


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_mobilenetv2_w025_sv_is_byte_identical(jobs):
    if "mobilenetv2_w025" not in REFERENCE:
        pytest.fail("fixtures/sv_hashes.json has no mobilenetv2_w025 entry")
    _check("mobilenetv2_w025", sv_reference.case_hashes(
        "mobilenetv2_w025", sv_reference.SLOW_CASES, jobs=jobs))
