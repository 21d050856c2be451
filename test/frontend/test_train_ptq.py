"""PTQ choices (adaptive vs nearest rounding) and the `hashiflex train` checkpoint round trip.

Tiny networks, few steps: the accuracy figures themselves are benchmarks/bench_accuracy.py's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hashiflex import api, train
from hashiflex.errors import InputError
from hashiflex.frontend import ptq
from hashiflex.dialects import po2
from hashiflex.frontend.quant import QuantOptions, build_fake_quant, quantize_ptq


def _digits8(n=300):
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images[:n] / 16.0).astype(np.float32)[:, None], d.target[:n].astype(np.int64)


def test_adaround_lowers_layer_error_and_stays_on_the_grid():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3),
                                torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 3)).eval()
    x = torch.rand(32, 1, 8, 8)
    fq = build_fake_quant(model, x, QuantOptions())
    stats = ptq.adaround(fq, x, ptq.AdaRoundOptions(steps=60))
    assert all(s["error_adaround"] <= s["error_nearest"] for s in stats)
    assert stats[1]["error_adaround"] < stats[1]["error_nearest"]
    q_ada = quantize_ptq(model, x, ptq="adaround")
    q_near = quantize_ptq(model, x, ptq="nearest")
    # both are valid Po2 codes of the same grid width; adaptive rounding changes some choices
    codes_a = [op.weight_codes for op in q_ada.layers if isinstance(op, po2.Conv2dOp)]
    codes_n = [op.weight_codes for op in q_near.layers if isinstance(op, po2.Conv2dOp)]
    assert all(np.abs(c).max() <= 8 for c in codes_a)
    assert any((a != n).any() for a, n in zip(codes_a, codes_n))
    # the snapped float weights are a fixed point of the code rule (export == weights)
    fq_a = q_ada.fake_quant
    before = codes_a
    fq_a.snap_()
    after = [op.weight_codes for op in q_ada.refresh().layers if isinstance(op, po2.Conv2dOp)]
    assert all((b == a).all() for b, a in zip(before, after))


def test_unknown_ptq_method_is_refused():
    with pytest.raises(InputError, match="--ptq"):
        api.import_model("small_net", ptq="best")


def test_train_checkpoint_round_trip_is_bit_exact(tmp_path):
    x, y = _digits8()
    out = tmp_path / "net.pt"
    result = train.train("small_net", x, y, out, epochs=1, lr=1e-3, val_fraction=0.25)
    record = train.read_checkpoint(out)
    assert record["spec"] == "small_net" and record["options"]["ptq"] == "adaround"
    # the checkpoint as a SPEC: import, golden model on the validation split
    module, quantized = api.import_model(str(out))
    assert po2.network_func(module).sym_name.data == "small_net"  # the checkpoint's name
    _, val = train.split(len(x), 0.25, 0)
    golden = api.golden(module, x[val])
    assert np.array_equal(golden.logits, quantized.run_int(x[val]))
    accuracy = float((golden.classes == y[val]).mean()) * 100
    assert accuracy == result.po2_accuracy == record["accuracy"]["po2"]


def test_train_bad_inputs_write_nothing(tmp_path):
    x, y = _digits8(40)
    out = tmp_path / "net.pt"
    with pytest.raises(InputError, match="labels for"):
        train.train("small_net", x, y[:10], out, epochs=0)
    with pytest.raises(InputError, match="single class"):
        train.train("small_net", x, np.zeros(40, dtype=np.int64), out, epochs=0)
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        train.train("small_net", bad, y, out, epochs=0)
    assert not out.exists()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a hashiflex checkpoint"):
        api.import_model(str(junk))
    other = tmp_path / "other.pt"
    torch.save({"format": train.CHECKPOINT_FORMAT, "version": 99}, other)
    with pytest.raises(InputError, match="version 99"):
        api.import_model(str(other))
