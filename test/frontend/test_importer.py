"""The importer's po2 IR: verifies, prints and parses back exactly, and keeps layer names."""

import io

import numpy as np
import torch
from xdsl.parser import Parser
from xdsl.printer import Printer

from hashiflex import api
from hashiflex.dialects import po2
from hashiflex.golden import model as golden_model
from hashiflex.golden.semantics import quantize_input
from hashiflex.tools.registry import make_context


def _text(module) -> str:
    stream = io.StringIO()
    Printer(stream=stream).print_op(module)
    return stream.getvalue()


def test_tiny_cnn_ir_round_trips_and_runs_the_same():
    module, quantized = api.import_model("tiny_cnn")
    text = _text(module)
    parsed = Parser(make_context(), text).parse_module()
    parsed.verify()
    assert _text(parsed) == text
    layers = [op.layer for op in parsed.walk() if isinstance(op, po2.LayerOp)]
    assert layers == [op.op_name for op in quantized.fake_quant.ops[1:]]
    x = np.random.default_rng(0).random((4, 1, 16, 16), dtype=np.float32)
    x_int = quantize_input(x, quantized.input_format)
    np.testing.assert_array_equal(
        golden_model.run_int(parsed, x_int), golden_model.run_int(module, x_int)
    )


def test_large_weight_tensors_print_as_hex_and_parse_back():
    torch.manual_seed(0)
    from hashiflex.examples.mobilenetv2 import mobilenetv2
    from hashiflex.frontend.quant import quantize_ptq

    model = mobilenetv2(width_mult=0.25, input_size=8, num_classes=4, in_channels=3).eval()
    q = quantize_ptq(model, torch.rand(8, 3, 8, 8))
    module = q.rename("mbv2").module
    text = _text(module)
    assert 'dense<"0x' in text  # large tensors are hex, small ones readable
    parsed = Parser(make_context(), text).parse_module()
    assert _text(parsed) == text
