"""
Stress tests of the reprogrammable NPU in RTL simulation (issue 5):

* a weight swap in the middle of a long stream: every output equals the golden model for
  the weights current when its image entered, and, checked independently of the API's
  schedule, images before the swap image use the old weights and the rest the new ones;
* an undersized NPU (1 lane where the pipeline would need 2) that forces stalls: no image
  lost, every output bit-exact, and the measured cycles per image are the NPU's;
* default sizing: no stall and no throughput loss (the small net and the digits example),
  and MobileNetV2's classifier by the throughput model;
* bad weights: clear errors, nothing written.

Designs are compiled once per session (the `small_net` example with default and 1-lane NPUs, and
the digits example shared with test_finetune.py) under pytest's temporary directory.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from hashiflex import api
from hashiflex import finetune as ft
from hashiflex.errors import InputError
from hashiflex.passes.to_hw import npu as npu_hw


def shared_design(tmp_path_factory, key: str, spec: str, **options) -> api.Design:
    """Compile once per pytest session (also across test modules) under the base temp dir."""
    root = tmp_path_factory.getbasetemp() / "shared-designs" / key
    design_dir = root / "design"
    if (design_dir / "design.json").is_file():
        return api.open_design(design_dir)
    root.mkdir(parents=True, exist_ok=True)
    return api.compile(spec, design_dir, **options)


@pytest.fixture(scope="module")
def small_default(tmp_path_factory):
    return shared_design(tmp_path_factory, "small-default", "small_net")


@pytest.fixture(scope="module")
def small_1lane(tmp_path_factory):
    return shared_design(tmp_path_factory, "small-1lane", "small_net", npu_lanes=1)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return shared_design(tmp_path_factory, "digits", "tiny_cnn")


def random_images(design: api.Design, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random((count, *design.manifest["input_shape"]), dtype=np.float32)


def marked_weights(design: api.Design, winner: int, seed: int) -> dict:
    """Random full-range weights with a bias that makes class `winner` win every image."""
    m = design.manifest
    rng = np.random.default_rng(seed)
    w_lim = (1 << (m["npu_weight_bits"] - 1)) - 1
    w = rng.integers(-w_lim, w_lim + 1, size=(m["classes"], m["features"]), dtype=np.int64)
    b = rng.integers(-1000, 1000, size=m["classes"], dtype=np.int64)
    b[winner] = (1 << (m["npu_bias_bits"] - 1)) - 1  # > any sum of the other classes
    return {"weights": w, "bias": b}


def golden_logits(design: api.Design, images: np.ndarray, npu: dict) -> np.ndarray:
    module = api.parse_ir(design.file("po2"))
    return api.golden(module, images, npu).logits


# ---------------------------------------------------------------------------
# Swap in the middle of a stream
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["small_default", "small_1lane"])
def test_swap_mid_stream(which, request):
    design = request.getfixturevalue(which)
    images = random_images(design, 150, seed=1)
    pixels = design.manifest["input_shape"][1] * design.manifest["input_shape"][2]
    old, new = marked_weights(design, 3, seed=2), marked_weights(design, 7, seed=3)
    swap_after = 60  # images
    result = api.simulate(design.path, images, weights=old, check=True,
                          writes_mid_stream=[(swap_after * pixels, new)])
    assert result.ok and result.compared == 150 and len(result.classes) == 150
    # independently of the API's schedule: the RTL's logits are the old weights' up to one
    # image and the new weights' from it on, and the classes show it
    first_new = ft.swap_image(result.logits, golden_logits(design, images, old),
                              golden_logits(design, images, new))
    assert first_new is not None
    assert np.all(result.classes[:first_new] == 3) and np.all(result.classes[first_new:] == 7)
    # the swap pulse follows the reload's writes (one per cycle) after `swap_after` images
    # were accepted: it applies a few images later at most, never earlier
    words = design.manifest["classes"] * (design.manifest["features"] + 1)
    assert swap_after <= first_new <= swap_after + math.ceil((words + 1) / pixels) + 1


def test_two_swaps_in_stalling_stream(small_1lane):
    """Reload twice while the undersized NPU stalls the pipeline: three weight segments."""
    design = small_1lane
    images = random_images(design, 160, seed=4)
    pixels = 64
    a, b, c = (marked_weights(design, w, seed=s) for w, s in ((0, 5), (9, 6), (4, 7)))
    result = api.simulate(design.path, images, weights=a, check=True,
                          writes_mid_stream=[(40 * pixels, b), (100 * pixels, c)])
    assert result.ok and result.compared == 160 and result.stalls > 0
    changes = np.flatnonzero(np.diff(result.classes)) + 1
    assert len(changes) == 2
    s1, s2 = changes
    assert 40 <= s1 <= 43 and 100 <= s2 <= 103
    assert set(result.classes[:s1]) == {0} and set(result.classes[s1:s2]) == {9}
    assert set(result.classes[s2:]) == {4}


# ---------------------------------------------------------------------------
# Stalls and throughput
# ---------------------------------------------------------------------------


def test_undersized_npu_stalls_without_loss(small_1lane):
    design = small_1lane
    report = design.report
    assert report["npu_lanes"] == 1
    assert report["npu_is_bottleneck"]
    assert report["npu_cycles_per_image"] == 80 > report["pipeline_cycles_per_image"] == 64
    assert report["cycles_per_image"] == 80
    images = random_images(design, 200, seed=8)
    weights = marked_weights(design, 2, seed=9)
    weights["bias"][2] = 0  # data-dependent classes
    result = api.simulate(design.path, images, weights=weights, check=True)
    assert result.ok and result.compared == 200 and len(result.classes) == 200
    assert result.stalls > 0
    # every image but the first waits (80 - 64) cycles for the NPU
    assert result.stalls >= (80 - 64) * (200 - 2)
    assert result.cycles_per_image == pytest.approx(report["npu_cycles_per_image"], abs=1)
    assert np.all(np.diff(result.out_cycles) >= 80)


def test_default_npu_no_stalls_small(small_default):
    report = small_default.report
    assert report["npu_lanes"] == npu_hw.default_lanes(8, 10, 64) == 2
    assert not report["npu_is_bottleneck"]
    result = api.simulate(small_default.path, random_images(small_default, 120, seed=10), check=True)
    assert result.ok and result.stalls == 0
    assert result.cycles_per_image == report["pipeline_cycles_per_image"] == 64


def test_default_npu_no_stalls_digits(digits):
    from hashiflex.examples.digits import load_digits_split

    report = digits.report
    assert not report["npu_is_bottleneck"]
    assert report["npu_cycles_per_image"] <= report["pipeline_cycles_per_image"]
    x = load_digits_split(size=16)[2].numpy()
    result = api.simulate(digits.path, x, check=True)
    assert result.ok and result.compared == len(x)
    assert result.stalls == 0
    assert result.cycles_per_image == report["pipeline_cycles_per_image"] == report["cycles_per_image"]


def test_mobilenetv2_classifier_throughput_model():
    """MobileNetV2 w1.0 (32x32): 1024 cycles/image in the pipeline, a 1280x10 classifier."""
    lanes = npu_hw.default_lanes(1280, 10, 1024)
    assert lanes == 13
    assert npu_hw.npu_cycles_per_image(1280, 10, lanes) <= 1024
    assert npu_hw.npu_cycles_per_image(1280, 10, lanes - 1) > 1024  # the smallest
    assert npu_hw.npu_cycles_per_image(1280, 10, 1) == 12800  # 1 lane: the bottleneck
    for k, n, p in ((24, 10, 256), (8, 10, 64), (1280, 10, 1024), (1280, 1000, 1024), (7, 3, 1)):
        lanes = npu_hw.default_lanes(k, n, p)
        assert npu_hw.npu_cycles_per_image(k, n, lanes) <= p
        assert lanes == 1 or npu_hw.npu_cycles_per_image(k, n, lanes - 1) > p


# ---------------------------------------------------------------------------
# Bad weights
# ---------------------------------------------------------------------------


def test_bad_weights_rejected(small_default, tmp_path):
    design = small_default
    images = random_images(design, 4, seed=11)
    good = marked_weights(design, 0, seed=12)
    bad_cases = {
        "shape": ({"weights": good["weights"][:, :5], "bias": good["bias"]}, r"\[classes <= 10, features 8\]"),
        "classes": ({"weights": np.zeros((11, 8), np.int64), "bias": np.zeros(11, np.int64)}, "classes <= 10"),
        "weight range": ({"weights": good["weights"] * 2 + 1, "bias": good["bias"]}, r"8-bit range \[-128, 127\]"),
        "bias range": ({"weights": good["weights"], "bias": good["bias"] * 4}, "24-bit range"),
        "bias shape": ({"weights": good["weights"], "bias": good["bias"][:3]}, "bias has shape"),
    }
    for name, (weights, message) in bad_cases.items():
        with pytest.raises(InputError, match=message):
            api.simulate(design.path, images, weights=weights)
        with pytest.raises(InputError, match=message):
            api.simulate(design.path, images, writes_mid_stream=[(10, weights)])
        out = tmp_path / f"{name}.load"
        with pytest.raises(InputError, match=message):
            ft.program(design.path, weights, out)
        assert not out.exists(), name
    assert list(tmp_path.iterdir()) == []
