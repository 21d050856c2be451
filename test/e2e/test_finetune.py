"""
Fine-tuning the NPU without new RTL (issue 5): the digits example compiled once, its
classifier retrained on the hardened layers' exact integer features for another task, and
the same RTL run with the original and the new weights, bit-exact against the golden model.
"""

from __future__ import annotations

import numpy as np
import pytest

from hashiflex import api
from hashiflex import finetune as ft
from hashiflex.errors import DesignError, InputError
from hashiflex.examples.digits import load_digits_split


def shared_design(tmp_path_factory, key: str, spec: str, **options) -> api.Design:
    """Compile once per pytest session (also across test modules) under the base temp dir."""
    design_dir = tmp_path_factory.getbasetemp() / "shared-designs" / key / "design"
    if (design_dir / "design.json").is_file():
        return api.open_design(design_dir)
    return api.compile(spec, design_dir, **options)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return shared_design(tmp_path_factory, "digits", "tiny_cnn")


@pytest.fixture(scope="module")
def data():
    return tuple(t.numpy() for t in load_digits_split(size=16))


def test_features_are_what_the_npu_sees(digits, data):
    x_test = data[2][:100]
    feats = ft.features(digits.path, x_test)
    assert feats.shape == (100, digits.manifest["features"]) and feats.dtype == np.int64
    # the original classifier on these features gives the golden model's logits exactly
    view = ft._DesignView(digits.path)
    logits, classes = ft.integer_predict(feats, view.original_weights(), digits.manifest)
    gold = api.golden(view.module, x_test)
    assert np.array_equal(logits, gold.logits) and np.array_equal(classes, gold.classes)
    # a po2 module works as well as a design directory
    assert np.array_equal(ft.features(view.module, x_test), feats)


def test_quantisation_rules():
    assert ft.weight_frac_for(1.0, 8) == 6  # round(1 * 64) = 64 <= 127 < 128
    assert ft.weight_frac_for(0.99, 8) == 7  # round(0.99 * 128) = 127
    assert ft.weight_frac_for(300.0, 8) == -2  # round(300 / 4) = 75
    w = np.array([[0.5, -1.0], [0.25, 0.0]])
    w_int, b_int, wf = ft.quantize_classifier(w, np.array([1.0, -2.0]), 5, 8, 24)
    assert wf == 6 and w_int.tolist() == [[32, -64], [16, 0]]
    assert b_int.tolist() == [1 << 11, -(2 << 11)]  # scale 2^-(5 + 6)
    # a bias too large for 24 bits at wf = 6 lowers weight_frac until it fits
    w_int, b_int, wf = ft.quantize_classifier(w, np.array([5000.0, 0.0]), 5, 8, 24)
    assert wf == 5 and b_int.max() < 1 << 23
    # the rule of golden/semantics.py (the frontend's too): half up, full signed range
    from hashiflex.golden.semantics import quantize_npu_bias, quantize_npu_weights

    assert quantize_npu_weights(np.array([0.5, -0.5, 1.5, -3.0, 3.0]), 0, 8).tolist() == [1, 0, 2, -3, 3]
    assert quantize_npu_weights(np.array([-2.0, 2.0]), 6, 8).tolist() == [-128, 127]
    assert quantize_npu_bias(np.array([2.5, -2.5]), 0).tolist() == [3, -2]


def test_finetune_and_program_files(digits, data, tmp_path):
    x_train, y_train = data[0], data[1]
    out = tmp_path / "W.npz"
    result = ft.finetune(digits.path, x_train, y_train % 2, out, epochs=100)
    stored = np.load(out)
    assert set(stored.files) == {"weights", "bias", "weight_frac", "feature_frac", "classes"}
    assert stored["weights"].shape == (2, 24) and stored["weights"].dtype == np.int64
    assert stored["bias"].shape == (2,) and stored["classes"].tolist() == [0, 1]
    assert np.abs(stored["weights"]).max() <= 127
    assert int(stored["weight_frac"]) == result["weight_frac"]
    assert result["train_accuracy"] > 0.9
    # deterministic
    again = ft.finetune(digits.path, x_train, y_train % 2, tmp_path / "W2.npz", epochs=100)
    assert np.array_equal(again["weights"], result["weights"])
    assert np.array_equal(again["bias"], result["bias"])
    # the load image: header, N*K + N writes in npu_write_sequence order, then swap
    load = ft.program(digits.path, out, tmp_path / "W.load")
    lines = load.read_text().splitlines()
    assert lines[0].startswith("# hashiflex-npu-load/1") and lines[-1] == "swap"
    words, swap = ft.read_load_image(load)
    assert swap
    assert words == api.npu_write_sequence(digits.manifest, api.load_weights(out))
    assert len(words) == 10 * 24 + 10
    assert "words: 250; address bits: 8; data bits: 24" in load.read_text()


def test_cli_finetune_program_simulate(digits, data, tmp_path, capsys):
    """The documented commands, in process (the CLI's own main)."""
    from hashiflex.tools.hashiflex_cli import main

    x_train, y_train, x_test, y_test = data
    np.save(tmp_path / "x.npy", x_train[:400])
    np.save(tmp_path / "y.npy", (y_train[:400] + 3) % 10)
    np.save(tmp_path / "xt.npy", x_test[:60])
    for argv in (
        ["-q", "finetune", str(digits.path), "--data", str(tmp_path / "x.npy"), "--labels",
         str(tmp_path / "y.npy"), "--out", str(tmp_path / "W.npz"), "--epochs", "100"],
        ["-q", "program", str(digits.path), str(tmp_path / "W.npz"), "--out", str(tmp_path / "W.load")],
        ["-q", "simulate", str(digits.path), "--inputs", str(tmp_path / "xt.npy"), "--weights",
         str(tmp_path / "W.npz"), "--check"],
    ):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0, argv
    assert "60 equal, 0 differ" in capsys.readouterr().out
    # errors: one line, exit 2
    with pytest.raises(SystemExit) as exit_:
        main(["-q", "finetune", str(digits.path), "--data", str(tmp_path / "x.npy"), "--labels",
              str(tmp_path / "xt.npy"), "--out", str(tmp_path / "bad.npz")])
    assert exit_.value.code == 2 and not (tmp_path / "bad.npz").exists()
    assert "error:" in capsys.readouterr().err


def test_demo_same_rtl_two_tasks(digits):
    """Task A (digits) and task B (parity) on the same RTL, bit-exact, golden == RTL."""
    figures = ft.demo(digits.path.parent, task="parity", reuse=True)
    assert figures["design"] == str(digits.path)
    a, b, ab = figures["A"], figures["B"], figures["A_then_B"]
    assert a["bit_exact"] == b["bit_exact"] == ab["bit_exact"] == "360/360"
    assert a["rtl_accuracy"] == a["golden_accuracy"] > 0.95
    assert b["rtl_accuracy"] == b["golden_accuracy"] > 0.93
    assert 180 <= ab["first_image_with_B"] <= 182
    assert figures["ok"]


def test_bad_input_nothing_written(digits, data, tmp_path):
    x, y = data[0][:50], data[1][:50]
    out = tmp_path / "W.npz"
    cases = [
        (x, y[:49], InputError, "49 labels for 50 images"),
        (x, y + 3, InputError, r"need 13 classes \(largest label 12\); the NPU of this design holds 10"),
        (x, y - 1, InputError, "labels must be >= 0"),
        (x, y.astype(np.float32) + 0.5, InputError, "integer class labels"),
        (x, y.reshape(5, 10), InputError, "1-D"),
        (x[:, :, :8, :8], y, InputError, r"the network takes \[1, 16, 16\]"),
        (tmp_path / "missing.npy", y, InputError, "does not exist"),
    ]
    for images, labels, error, message in cases:
        with pytest.raises(error, match=message):
            ft.finetune(digits.path, images, labels, out)
        assert not out.exists()
    np.save(tmp_path / "x8.npy", x[:, :, :8, :8])
    with pytest.raises(InputError, match=r"shape \[1, 8, 8\]; the network takes \[1, 16, 16\]"):
        ft.finetune(digits.path, tmp_path / "x8.npy", y, out)
    with pytest.raises(DesignError):
        ft.finetune(tmp_path, x, y, out)
    with pytest.raises(InputError, match="epochs"):
        ft.finetune(digits.path, x, y, out, epochs=0)
    assert not out.exists()
    # program: weights that do not fit the NPU
    with pytest.raises(InputError, match="features 24"):
        ft.program(digits.path, {"weights": np.zeros((2, 23), np.int64), "bias": np.zeros(2, np.int64)},
                   tmp_path / "W.load")
    with pytest.raises(InputError, match="8-bit range"):
        ft.program(digits.path, {"weights": np.full((2, 24), 200), "bias": np.zeros(2, np.int64)},
                   tmp_path / "W.load")
    with pytest.raises(InputError, match="does not exist"):
        ft.program(digits.path, tmp_path / "none.npz", tmp_path / "W.load")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x8.npy"]
