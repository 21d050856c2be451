"""
The po2 dialect: quantised CNNs whose frozen weights are powers of two.

It has two levels, in the spirit of CIRCT's layering:

* **Layer level** ops describe a quantised network as the frontend imports it from torch.fx:
  `po2.conv2d` (weights held as a compact sign/exponent code tensor), `po2.residual_add`,
  `po2.requant`, `po2.avgpool`, `po2.maxpool2d` / `po2.avgpool2d` (windowed pooling),
  `po2.leaky_relu`, `po2.clamp`, `po2.flatten`, `po2.concat` and `po2.select_channels`
  (channel concatenation, and chunks/splits/shuffles as a channel index list) and
  `po2.npu_linear` (the programmable classifier). Values are activation tensors of type
  `!po2.act<CxHxW, u8, frac>`, which
  carry their shape, bit width, signedness and Po2 scale.
* **Unrolled level** ops describe the hardened per-pixel datapath of a frozen layer:
  `po2.unrolled_conv2d` keeps the layer's geometry and holds, in its region, the shift/add
  graph from the window's input values to every output channel, built from scalar ops
  (`po2.const`, `po2.shl`, `po2.add`, `po2.sub`, `po2.neg`, `po2.sum`, `po2.rescale`) on
  builtin signed/unsigned integers (`ui8`, `si12`) whose widths are exact.

The number semantics of every op is written in docs/semantics.md and implemented once in
`hashiflex.golden.semantics`. Verifiers check shapes, codes and, for scalar ops, that the
result type holds every value the op can produce (`value_range` below), so IR that could
overflow is rejected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    ArrayAttr,
    DenseArrayBase,
    I64,
    DenseIntOrFPElementsAttr,
    IntAttr,
    IntegerAttr,
    IntegerType,
    ModuleOp,
    Signedness,
    StringAttr,
    TensorType,
    i8,
    i32,
    i64,
)
from xdsl.ir import (
    Attribute,
    Dialect,
    Operation,
    ParametrizedAttribute,
    Region,
    SSAValue,
    TypeAttribute,
)
from xdsl.irdl import (
    IRDLOperation,
    irdl_attr_definition,
    irdl_op_definition,
    lazy_traits_def,
    operand_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.parser import AttrParser, Parser
from xdsl.printer import Printer
from xdsl.traits import HasParent, IsTerminator, Pure
from xdsl.utils.exceptions import VerifyException

from hashiflex.golden.semantics import (
    ACTIVATIONS,
    Format,
    avgpool_constants,
    bits_for_range,
    conv_shift,
    npu_logit_bits,
    type_range,
)

# ---------------------------------------------------------------------------
# Types
# ---------------------------------------------------------------------------


@irdl_attr_definition
class ActType(ParametrizedAttribute, TypeAttribute):
    """
    An activation tensor: its shape (CxHxW, or N for a vector) and the format of its
    elements, integers `q` standing for `q * 2^-frac` (docs/semantics.md).

        !po2.act<8x16x16, u8, 4>     8 channels of 16x16, unsigned 8 bit, scale 2^-4
    """

    name = "po2.act"

    shape: ArrayAttr[IntAttr]
    bits: IntAttr
    signed: IntAttr
    frac: IntAttr

    def __init__(self, shape: Sequence[int], fmt: Format):
        super().__init__(
            ArrayAttr(IntAttr(d) for d in shape),
            IntAttr(fmt.bits),
            IntAttr(int(fmt.signed)),
            IntAttr(fmt.frac),
        )

    @property
    def dims(self) -> tuple[int, ...]:
        return tuple(d.data for d in self.shape.data)

    @property
    def fmt(self) -> Format:
        return Format(self.bits.data, bool(self.signed.data), self.frac.data)

    @property
    def num_elements(self) -> int:
        return int(np.prod(self.dims))

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        with parser.in_angle_brackets():
            dims = parser.parse_dimension_list()
            parser.parse_punctuation(",")
            elem = parser.parse_identifier("activation element format, e.g. u8 or s8")
            if len(elem) < 2 or elem[0] not in "us" or not elem[1:].isdigit():
                parser.raise_error(f"expected an element format such as u8 or s8, got '{elem}'")
            parser.parse_punctuation(",")
            frac = parser.parse_integer(allow_negative=True, allow_boolean=False)
        return (
            ArrayAttr(IntAttr(d) for d in dims),
            IntAttr(int(elem[1:])),
            IntAttr(int(elem[0] == "s")),
            IntAttr(frac),
        )

    def print_parameters(self, printer: Printer) -> None:
        dims = "x".join(str(d) for d in self.dims)
        sign = "s" if self.signed.data else "u"
        printer.print_string(f"<{dims}, {sign}{self.bits.data}, {self.frac.data}>")

    def verify(self) -> None:
        if not self.dims or any(d <= 0 for d in self.dims):
            raise VerifyException(f"activation shape {list(self.dims)} must be non-empty and positive")
        if len(self.dims) not in (1, 3):
            raise VerifyException(
                f"activation shape {list(self.dims)} must be CxHxW or a vector N"
            )
        if not 1 <= self.bits.data <= 64:
            raise VerifyException(f"activation width {self.bits.data} must be in 1..64")
        if self.signed.data not in (0, 1):
            raise VerifyException("activation signedness must be 0 or 1")


def scalar_type(width: int, signed: bool) -> IntegerType:
    """The builtin integer type of an unrolled value: si<width> or ui<width>."""
    return IntegerType(width, Signedness.SIGNED if signed else Signedness.UNSIGNED)


def scalar_type_for_range(lo: int, hi: int) -> IntegerType:
    """The narrowest si/ui type holding [lo, hi]."""
    width, signed = bits_for_range(lo, hi)
    return scalar_type(width, signed)


def _act(value: SSAValue | Attribute, what: str, op: Operation) -> ActType:
    typ = value.type if isinstance(value, SSAValue) else value
    if not isinstance(typ, ActType):
        raise VerifyException(f"{op.name} {_layer_of(op)}: {what} must be !po2.act, got {typ}")
    return typ


def _layer_of(op: Operation) -> str:
    layer = op.properties.get("layer")
    return f"'{layer.data}'" if isinstance(layer, StringAttr) else ""


# ---------------------------------------------------------------------------
# Shared parsing and printing of layer-level ops
# ---------------------------------------------------------------------------


def _int_array(values: Sequence[int], elt: IntegerType = i64) -> DenseArrayBase:
    return DenseArrayBase.from_list(elt, [int(v) for v in values])


def _dense(values: np.ndarray, elt: IntegerType) -> DenseIntOrFPElementsAttr:
    values = np.asarray(values)
    return DenseIntOrFPElementsAttr.from_list(
        TensorType(elt, values.shape), [int(v) for v in values.reshape(-1)]
    )


def dense_to_numpy(attr: DenseIntOrFPElementsAttr) -> np.ndarray:
    """A dense integer attribute as an int64 array of its shape."""
    elt = attr.get_element_type()
    assert isinstance(elt, IntegerType)
    dtype = {8: np.int8, 16: np.int16, 32: np.int32, 64: np.int64}[elt.width.data]
    flat = np.frombuffer(attr.data.data, dtype=dtype).astype(np.int64)
    return flat.reshape(attr.get_shape())


def network_func(module: ModuleOp, func_name: str | None = None) -> func.FuncOp:
    """
    The network of a po2 module: its one top-level func.func, or the one named `func_name`.
    Raises ValueError naming what it found; callers re-raise it as their own error kind.
    """
    funcs = [op for op in module.ops if isinstance(op, func.FuncOp)]
    if func_name is not None:
        funcs = [f for f in funcs if f.sym_name.data == func_name]
        if not funcs:
            raise ValueError(f"no function @{func_name} in the module")
    if len(funcs) != 1:
        names = "".join(f" @{f.sym_name.data}" for f in funcs)
        raise ValueError(f"expected exactly one func.func in the module, found {len(funcs)}{names}")
    return funcs[0]


def _int_prop(op: Operation, key: str) -> int:
    attr = op.properties[key]
    assert isinstance(attr, IntegerAttr)
    return attr.value.data


def _array_prop(op: Operation, key: str) -> tuple[int, ...]:
    attr = op.properties[key]
    assert isinstance(attr, DenseArrayBase)
    return tuple(attr.iter_values())


def _str_prop(op: Operation, key: str) -> str:
    attr = op.properties[key]
    assert isinstance(attr, StringAttr)
    return attr.data


# Typed accessors of properties. Each property `key` is declared twice on an op: its
# attribute, `key_attr = prop_def(..., prop_name="key")` (what the IR holds, named `key` in
# the text), and its Python value, `key: int = int_property("key")`, so that callers read
# `op.stride` as (2, 2) rather than unpacking attributes. Returning Any lets each op
# annotate its own accessor's type in one line.


def int_property(key: str) -> Any:
    """A read-only accessor: the i64 property `key` as an int."""
    return property(lambda op: _int_prop(op, key), doc=f"The `{key}` property as an int.")


def ints_property(key: str) -> Any:
    """A read-only accessor: the i64 array property `key` as a tuple of ints."""
    return property(lambda op: _array_prop(op, key), doc=f"The `{key}` property as a tuple of ints.")


def str_property(key: str) -> Any:
    """A read-only accessor: the string property `key` as a str."""
    return property(lambda op: _str_prop(op, key), doc=f"The `{key}` property as a str.")


def tensor_property(key: str) -> Any:
    """A read-only accessor: the dense integer tensor property `key` as an int64 array."""
    return property(lambda op: dense_to_numpy(op.properties[key]), doc=f"The `{key}` tensor as int64.")


I64Array = DenseArrayBase.constr(i64)


class LayerOp(IRDLOperation):
    """
    Base of the layer-level ops: every one names the model layer it came from (the fx node),
    so that diagnostics and generated hardware point back at the model. Shared printing:

        %y = po2.<op> "layer.name" %operands {key = value ...} : in types -> out type
    """

    layer_attr = prop_def(StringAttr, prop_name="layer")
    layer: str = str_property("layer")

    # Properties printed as `key value` pairs, in this order (subclasses set them).
    PRINTED_PROPERTIES: ClassVar[tuple[str, ...]] = ()

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_string_literal(self.layer)
        printer.print_string(" ")
        printer.print_list(self.operands, printer.print_operand)
        for key in self.PRINTED_PROPERTIES:
            printer.print_string(f" {key} ")
            _print_property(printer, self.properties[key])
        printer.print_op_attributes(self.attributes)
        printer.print_string(" : ")
        printer.print_list((o.type for o in self.operands), printer.print_attribute)
        printer.print_string(" -> ")
        printer.print_list((r.type for r in self.results), printer.print_attribute)
        for region in self.regions:
            printer.print_string(" ")
            printer.print_region(region, print_entry_block_args=True)

    @classmethod
    def parse(cls, parser: Parser):
        layer = parser.parse_str_literal("layer name")
        operands = parser.parse_comma_separated_list(
            parser.Delimiter.NONE, parser.parse_unresolved_operand
        )
        properties: dict[str, Attribute] = {"layer": StringAttr(layer)}
        for key in cls.PRINTED_PROPERTIES:
            parser.parse_keyword(key)
            properties[key] = _parse_property(parser)
        attributes = parser.parse_optional_attr_dict()
        parser.parse_punctuation(":")
        in_types = parser.parse_comma_separated_list(parser.Delimiter.NONE, parser.parse_type)
        parser.parse_punctuation("->")
        out_types = parser.parse_comma_separated_list(parser.Delimiter.NONE, parser.parse_type)
        resolved = parser.resolve_operands(operands, in_types, parser.pos)
        regions = []
        if cls.get_irdl_definition().regions:
            regions = [parser.parse_region()]
        op = cls.create(
            operands=resolved,
            result_types=out_types,
            properties=properties,
            attributes=attributes,
            regions=regions,
        )
        return op


def _print_property(printer: Printer, attr: Attribute) -> None:
    """Integers and strings bare, arrays as [a, b], tensors as dense<...> : type."""
    if isinstance(attr, IntegerAttr):
        printer.print_string(str(attr.value.data))
    elif isinstance(attr, StringAttr):
        printer.print_string_literal(attr.data)
    elif isinstance(attr, DenseArrayBase):
        printer.print_string("[" + ", ".join(str(v) for v in attr.iter_values()) + "]")
    elif isinstance(attr, DenseIntOrFPElementsAttr) and len(attr) > 256:
        # Large weight tensors print as hex (as MLIR does): far faster to parse.
        printer.print_string(f'dense<"0x{attr.data.data.hex().upper()}"> : ')
        printer.print_attribute(attr.type)
    else:
        printer.print_attribute(attr)


def _parse_property(parser: Parser) -> Attribute:
    if parser.parse_optional_punctuation("[") is not None:
        values: list[int] = []
        if parser.parse_optional_punctuation("]") is None:
            values = parser.parse_comma_separated_list(
                parser.Delimiter.NONE, lambda: parser.parse_integer(allow_boolean=False)
            )
            parser.parse_punctuation("]")
        return _int_array(values)
    if (text := parser.parse_optional_str_literal()) is not None:
        return StringAttr(text)
    if (value := parser.parse_optional_integer(allow_boolean=False)) is not None:
        return IntegerAttr(value, i64)
    return parser.parse_attribute()


def _check_act(op: LayerOp, act: str) -> None:
    if act not in ACTIVATIONS:
        raise VerifyException(
            f"{op.name} {_layer_of(op)}: activation '{act}' is not one of {', '.join(ACTIVATIONS)}"
        )


# ---------------------------------------------------------------------------
# Layer-level ops
# ---------------------------------------------------------------------------


class UnaryLayerOp(LayerOp):
    """Base of the layer ops from one activation tensor to one."""

    input = operand_def(ActType)
    output = result_def(ActType)


class ConvLikeOp(UnaryLayerOp):
    """Geometry shared by po2.conv2d and po2.unrolled_conv2d."""

    kernel_attr = prop_def(I64Array, prop_name="kernel")
    stride_attr = prop_def(I64Array, prop_name="stride")
    padding_attr = prop_def(I64Array, prop_name="padding")
    groups_attr = prop_def(IntegerAttr[I64], prop_name="groups")
    act_attr = prop_def(StringAttr, prop_name="act")

    kernel: tuple[int, int] = ints_property("kernel")
    """(height, width) of the window."""
    stride: tuple[int, int] = ints_property("stride")
    """(vertical, horizontal) step of the window."""
    padding: tuple[int, int, int, int] = ints_property("padding")
    """Zero padding (top, left, bottom, right)."""
    groups: int = int_property("groups")
    act: str = str_property("act")

    @staticmethod
    def geometry_properties(
        layer: str,
        kernel: Sequence[int],
        stride: Sequence[int],
        padding: Sequence[int],
        groups: int,
        act: str,
    ) -> dict[str, Attribute]:
        """The properties both conv ops hold, as attributes."""
        return {
            "layer": StringAttr(layer),
            "kernel": _int_array(kernel),
            "stride": _int_array(stride),
            "padding": _int_array(padding),
            "groups": IntegerAttr(groups, i64),
            "act": StringAttr(act),
        }

    def verify_geometry(self) -> None:
        where = f"{self.name} {_layer_of(self)}"
        in_t, out_t = _act(self.input, "input", self), _act(self.output, "result", self)
        if len(in_t.dims) != 3 or len(out_t.dims) != 3:
            raise VerifyException(f"{where}: input and result must be CxHxW tensors")
        if len(self.kernel) != 2 or len(self.stride) != 2:
            raise VerifyException(f"{where}: kernel and stride need two values (h, w)")
        if len(self.padding) != 4:
            raise VerifyException(f"{where}: padding needs four values (top, left, bottom, right)")
        (kh, kw), (sh, sw), pads = self.kernel, self.stride, self.padding
        if min(kh, kw, sh, sw) < 1 or min(pads) < 0:
            raise VerifyException(f"{where}: kernel and stride must be >= 1, padding >= 0")
        _check_act(self, self.act)
        cin, h, w = in_t.dims
        cout, oh, ow = out_t.dims
        groups = self.groups
        if groups < 1 or cin % groups or cout % groups:
            raise VerifyException(
                f"{where}: groups={groups} must divide input channels {cin} and output channels {cout}"
            )
        exp_oh = (h + pads[0] + pads[2] - kh) // sh + 1
        exp_ow = (w + pads[1] + pads[3] - kw) // sw + 1
        if (oh, ow) != (exp_oh, exp_ow):
            raise VerifyException(
                f"{where}: result is {oh}x{ow} but a {kh}x{kw} kernel with stride {sh}x{sw} and "
                f"padding {list(pads)} on {h}x{w} gives {exp_oh}x{exp_ow}"
            )


@irdl_op_definition
class Conv2dOp(ConvLikeOp):
    """
    A frozen 2-D convolution with Po2 weights, bias, requantisation and activation
    (docs/semantics.md, Conv2d). `weights` holds the codes `c` (int8, OxI/groupsxKHxKW):
    0 is a zero weight, otherwise `sign(c) * 2^(exp_base[o] + |c| - 1)`. `bias` is at the
    accumulator's scale; `shift[o] = Fx - Fy - exp_base[o]` requantises channel o.
    """

    name = "po2.conv2d"

    weights_attr = prop_def(DenseIntOrFPElementsAttr, prop_name="weights")
    exp_bits_attr = prop_def(IntegerAttr[I64], prop_name="exp_bits")
    exp_base_attr = prop_def(I64Array, prop_name="exp_base")
    bias_attr = prop_def(I64Array, prop_name="bias")
    shift_attr = prop_def(I64Array, prop_name="shift")

    weight_codes: np.ndarray = tensor_property("weights")
    """The codes, int64 (out channels, in channels / groups, kernel h, kernel w)."""
    exp_bits: int = int_property("exp_bits")
    exp_base: tuple[int, ...] = ints_property("exp_base")
    bias: tuple[int, ...] = ints_property("bias")
    shift: tuple[int, ...] = ints_property("shift")

    traits = traits_def(Pure())

    PRINTED_PROPERTIES: ClassVar[tuple[str, ...]] = (
        "kernel", "stride", "padding", "groups", "act",
        "exp_bits", "exp_base", "shift", "bias", "weights",
    )

    def __init__(
        self,
        layer: str,
        input: SSAValue | Operation,
        result_type: ActType,
        *,
        weights: np.ndarray,
        exp_base: Sequence[int],
        bias: Sequence[int],
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int, int, int] = (0, 0, 0, 0),
        groups: int = 1,
        act: str = "none",
        exp_bits: int = 3,
    ):
        in_type = SSAValue.get(input).type
        assert isinstance(in_type, ActType)
        weights = np.asarray(weights)
        shifts = [conv_shift(in_type.fmt.frac, result_type.fmt.frac, e) for e in exp_base]
        super().__init__(
            operands=[input],
            result_types=[result_type],
            properties={
                **self.geometry_properties(layer, weights.shape[2:], stride, padding, groups, act),
                "exp_bits": IntegerAttr(exp_bits, i64),
                "exp_base": _int_array(exp_base),
                "shift": _int_array(shifts),
                "bias": _int_array(bias),
                "weights": _dense(weights, i8),
            },
        )

    def verify_(self) -> None:
        self.verify_geometry()
        where = f"{self.name} {_layer_of(self)}"
        in_t, out_t = _act(self.input, "input", self), _act(self.output, "result", self)
        cin, cout, groups = in_t.dims[0], out_t.dims[0], self.groups
        expected = (cout, cin // groups, *self.kernel)
        shape = tuple(self.weights_attr.get_shape())
        if shape != expected:
            raise VerifyException(
                f"{where}: weights have shape {list(shape)}, expected {list(expected)} "
                f"(out channels, in channels / groups, kernel h, kernel w)"
            )
        elt = self.weights_attr.get_element_type()
        if not isinstance(elt, IntegerType) or elt.width.data != 8:
            raise VerifyException(f"{where}: weight codes must be i8")
        exp_bits = self.exp_bits
        if not 1 <= exp_bits <= 6:
            raise VerifyException(f"{where}: exp_bits={exp_bits} must be in 1..6")
        max_code = 1 << exp_bits
        codes = self.weight_codes
        if codes.size and np.abs(codes).max() > max_code:
            o, i, y, x = np.unravel_index(np.argmax(np.abs(codes)), codes.shape)
            raise VerifyException(
                f"{where}: weight code {codes[o, i, y, x]} at [{o}, {i}, {y}, {x}] is outside "
                f"the {exp_bits}-bit exponent code range -{max_code}..{max_code}"
            )
        for key, values in (("exp_base", self.exp_base), ("bias", self.bias), ("shift", self.shift)):
            if len(values) != cout:
                raise VerifyException(
                    f"{where}: {key} has {len(values)} values, expected one per "
                    f"output channel ({cout})"
                )
        for o, (e, s) in enumerate(zip(self.exp_base, self.shift)):
            expected_shift = conv_shift(in_t.fmt.frac, out_t.fmt.frac, e)
            if s != expected_shift:
                raise VerifyException(
                    f"{where}: shift[{o}] = {s} but the formats require "
                    f"Fx - Fy - exp_base = {in_t.fmt.frac} - {out_t.fmt.frac} - {e} = {expected_shift}"
                )


class ActivatedLayerOp(LayerOp):
    """Base of the element-wise layer ops that requantise into their result's format."""

    output = result_def(ActType)
    act_attr = prop_def(StringAttr, prop_name="act")

    act: str = str_property("act")

    traits = traits_def(Pure())
    PRINTED_PROPERTIES: ClassVar[tuple[str, ...]] = ("act",)

    def __init__(self, layer: str, operands: Sequence[SSAValue], result_type: ActType, act: str):
        super().__init__(
            operands=operands,
            result_types=[result_type],
            properties={"layer": StringAttr(layer), "act": StringAttr(act)},
        )


@irdl_op_definition
class ResidualAddOp(ActivatedLayerOp):
    """Align two tensors' scales by shifts, add exactly, requantise (semantics: Residual add)."""

    name = "po2.residual_add"

    lhs = operand_def(ActType)
    rhs = operand_def(ActType)

    def __init__(self, layer: str, lhs: SSAValue, rhs: SSAValue, result_type: ActType, act: str = "none"):
        super().__init__(layer, [lhs, rhs], result_type, act)

    def verify_(self) -> None:
        _check_act(self, self.act)
        a, b = _act(self.lhs, "lhs", self), _act(self.rhs, "rhs", self)
        y = _act(self.output, "result", self)
        if not (a.dims == b.dims == y.dims):
            raise VerifyException(
                f"{self.name} {_layer_of(self)}: shapes differ: lhs {list(a.dims)}, "
                f"rhs {list(b.dims)}, result {list(y.dims)}"
            )


@irdl_op_definition
class RequantOp(ActivatedLayerOp):
    """Change a tensor's format: round, shift, saturate, clamp (semantics: Requantise)."""

    name = "po2.requant"

    input = operand_def(ActType)

    def __init__(self, layer: str, input: SSAValue, result_type: ActType, act: str = "none"):
        super().__init__(layer, [input], result_type, act)

    def verify_(self) -> None:
        _check_act(self, self.act)
        x, y = _act(self.input, "input", self), _act(self.output, "result", self)
        if x.dims != y.dims:
            raise VerifyException(
                f"{self.name} {_layer_of(self)}: input shape {list(x.dims)} differs from result "
                f"shape {list(y.dims)}"
            )


@irdl_op_definition
class AvgPoolOp(UnaryLayerOp):
    """Global average pool CxHxW -> Cx1x1 by a sum and a constant multiply and shift."""

    name = "po2.avgpool"

    multiplier_attr = prop_def(IntegerAttr[I64], prop_name="multiplier")
    shift_attr = prop_def(IntegerAttr[I64], prop_name="shift")

    multiplier: int = int_property("multiplier")
    shift: int = int_property("shift")

    traits = traits_def(Pure())
    PRINTED_PROPERTIES: ClassVar[tuple[str, ...]] = ("multiplier", "shift")

    def __init__(self, layer: str, input: SSAValue, result_type: ActType):
        in_type = SSAValue.get(input).type
        assert isinstance(in_type, ActType)
        mult, shift = avgpool_constants(in_type.dims[1] * in_type.dims[2])
        super().__init__(
            operands=[input],
            result_types=[result_type],
            properties={
                "layer": StringAttr(layer),
                "multiplier": IntegerAttr(mult, i64),
                "shift": IntegerAttr(shift, i64),
            },
        )

    def verify_(self) -> None:
        where = f"{self.name} {_layer_of(self)}"
        x, y = _act(self.input, "input", self), _act(self.output, "result", self)
        if len(x.dims) != 3 or y.dims != (x.dims[0], 1, 1):
            raise VerifyException(
                f"{where}: global pooling maps CxHxW to Cx1x1, got {list(x.dims)} -> {list(y.dims)}"
            )
        expected = avgpool_constants(x.dims[1] * x.dims[2])
        got = (self.multiplier, self.shift)
        if got != expected:
            raise VerifyException(
                f"{where}: multiplier/shift {got} differ from the semantics' constants "
                f"{expected} for {x.dims[1] * x.dims[2]} positions"
            )


@irdl_op_definition
class FlattenOp(UnaryLayerOp):
    """CxHxW -> (C*H*W) in torch order; the format is unchanged."""

    name = "po2.flatten"

    traits = traits_def(Pure())

    def __init__(self, layer: str, input: SSAValue):
        in_type = SSAValue.get(input).type
        assert isinstance(in_type, ActType)
        super().__init__(
            operands=[input],
            result_types=[ActType([in_type.num_elements], in_type.fmt)],
            properties={"layer": StringAttr(layer)},
        )

    def verify_(self) -> None:
        x, y = _act(self.input, "input", self), _act(self.output, "result", self)
        if y.dims != (x.num_elements,) or x.fmt != y.fmt:
            raise VerifyException(
                f"{self.name} {_layer_of(self)}: flattening {x} must give a vector of "
                f"{x.num_elements} elements in the same format, got {y}"
            )


class WindowPoolOp(UnaryLayerOp):
    """
    Geometry shared by the windowed pooling ops (po2.maxpool2d, po2.avgpool2d): a KHxKW
    window moved by a stride over the padded image, channel by channel. The accessors have
    the names of the conv ops' (`kernel`, `stride`, `padding`), so the streaming window
    logic of passes/to_hw/conv.py serves both.
    """

    kernel_attr = prop_def(I64Array, prop_name="kernel")
    stride_attr = prop_def(I64Array, prop_name="stride")
    padding_attr = prop_def(I64Array, prop_name="padding")

    kernel: tuple[int, int] = ints_property("kernel")
    """(height, width) of the window."""
    stride: tuple[int, int] = ints_property("stride")
    """(vertical, horizontal) step of the window."""
    padding: tuple[int, int, int, int] = ints_property("padding")
    """Padding (top, left, bottom, right); ceil_mode is extra bottom/right padding."""

    traits = traits_def(Pure())

    @property
    def groups(self) -> int:
        """Pooling is per channel: as many groups as channels (a depthwise window)."""
        return _act(self.input, "input", self).dims[0]

    @staticmethod
    def window_properties(layer: str, kernel: Sequence[int], stride: Sequence[int],
                          padding: Sequence[int]) -> dict[str, Attribute]:
        return {
            "layer": StringAttr(layer),
            "kernel": _int_array(kernel),
            "stride": _int_array(stride),
            "padding": _int_array(padding),
        }

    def verify_window(self) -> None:
        where = f"{self.name} {_layer_of(self)}"
        in_t, out_t = _act(self.input, "input", self), _act(self.output, "result", self)
        if len(in_t.dims) != 3 or len(out_t.dims) != 3:
            raise VerifyException(f"{where}: input and result must be CxHxW tensors")
        if len(self.kernel) != 2 or len(self.stride) != 2 or len(self.padding) != 4:
            raise VerifyException(
                f"{where}: kernel and stride need two values (h, w), padding four "
                "(top, left, bottom, right)")
        (kh, kw), (sh, sw), pads = self.kernel, self.stride, self.padding
        if min(kh, kw, sh, sw) < 1 or min(pads) < 0:
            raise VerifyException(f"{where}: kernel and stride must be >= 1, padding >= 0")
        if max(pads[0], pads[2]) >= kh or max(pads[1], pads[3]) >= kw:
            raise VerifyException(
                f"{where}: padding {list(pads)} must be smaller than the kernel {kh}x{kw} "
                "(every window must hold an image pixel)")
        c, h, w = in_t.dims
        exp = (c, (h + pads[0] + pads[2] - kh) // sh + 1, (w + pads[1] + pads[3] - kw) // sw + 1)
        if out_t.dims != exp:
            raise VerifyException(
                f"{where}: result is {list(out_t.dims)} but a {kh}x{kw} window with stride "
                f"{sh}x{sw} and padding {list(pads)} on {list(in_t.dims)} gives {list(exp)}")


@irdl_op_definition
class MaxPool2dOp(WindowPoolOp):
    """
    Max pooling (semantics: MaxPool2d): the maximum of each window, padding is the
    format's minimum code (torch's -inf). The format is unchanged.
    """

    name = "po2.maxpool2d"

    PRINTED_PROPERTIES: ClassVar[tuple[str, ...]] = ("kernel", "stride", "padding")

    def __init__(self, layer: str, input: SSAValue, result_type: ActType, *,
                 kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int]):
        super().__init__(operands=[input], result_types=[result_type],
                         properties=self.window_properties(layer, kernel, stride, padding))

    def verify_(self) -> None:
        self.verify_window()
        x, y = _act(self.input, "input", self), _act(self.output, "result", self)
        if x.fmt != y.fmt:
            raise VerifyException(
                f"{self.name} {_layer_of(self)}: max pooling keeps the format, got "
                f"{x.fmt} -> {y.fmt}")


@irdl_op_definition
class AvgPool2dOp(WindowPoolOp):
    """
    Windowed average pooling (semantics: AvgPool2d): the window's sum (zero padding counted,
    torch's count_include_pad) times `multiplier`, requantised by `shift` + Fx - Fy, with
    (multiplier, shift) = avgpool_constants(KH*KW): a shift for Po2 areas.
    """

    name = "po2.avgpool2d"

    multiplier_attr = prop_def(IntegerAttr[I64], prop_name="multiplier")
    shift_attr = prop_def(IntegerAttr[I64], prop_name="shift")

    multiplier: int = int_property("multiplier")
    shift: int = int_property("shift")

    PRINTED_PROPERTIES: ClassVar[tuple[str, ...]] = (
        "kernel", "stride", "padding", "multiplier", "shift")

    def __init__(self, layer: str, input: SSAValue, result_type: ActType, *,
                 kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int]):
        mult, shift = avgpool_constants(kernel[0] * kernel[1])
        super().__init__(operands=[input], result_types=[result_type], properties={
            **self.window_properties(layer, kernel, stride, padding),
            "multiplier": IntegerAttr(mult, i64),
            "shift": IntegerAttr(shift, i64),
        })

    def verify_(self) -> None:
        self.verify_window()
        area = self.kernel[0] * self.kernel[1]
        expected = avgpool_constants(area)
        if (self.multiplier, self.shift) != expected:
            raise VerifyException(
                f"{self.name} {_layer_of(self)}: multiplier/shift "
                f"{(self.multiplier, self.shift)} differ from the semantics' constants "
                f"{expected} for a window of {area} positions")


class ElementwiseLayerOp(UnaryLayerOp):
    """Base of the element-wise activations that requantise into their result's format."""

    traits = traits_def(Pure())

    def verify_same_shape(self) -> None:
        x, y = _act(self.input, "input", self), _act(self.output, "result", self)
        if x.dims != y.dims:
            raise VerifyException(
                f"{self.name} {_layer_of(self)}: input shape {list(x.dims)} differs from "
                f"result shape {list(y.dims)}")


@irdl_op_definition
class LeakyReluOp(ElementwiseLayerOp):
    """
    LeakyReLU with the Po2 negative slope 2^-slope_shift (semantics: LeakyReLU): a value
    below zero is requantised with slope_shift more bits of right shift.
    """

    name = "po2.leaky_relu"

    slope_shift_attr = prop_def(IntegerAttr[I64], prop_name="slope_shift")
    slope_shift: int = int_property("slope_shift")

    PRINTED_PROPERTIES: ClassVar[tuple[str, ...]] = ("slope_shift",)

    def __init__(self, layer: str, input: SSAValue, result_type: ActType, slope_shift: int):
        super().__init__(operands=[input], result_types=[result_type], properties={
            "layer": StringAttr(layer), "slope_shift": IntegerAttr(slope_shift, i64)})

    def verify_(self) -> None:
        self.verify_same_shape()
        if not 0 <= self.slope_shift <= 32:
            raise VerifyException(
                f"{self.name} {_layer_of(self)}: slope_shift {self.slope_shift} must be in "
                "0..32 (negative slope 2^-slope_shift)")


@irdl_op_definition
class ClampOp(ElementwiseLayerOp):
    """
    Hardtanh(min, max) (semantics: Clamp): requantise into the result's format, then clamp
    to [lo, hi], the real bounds on the result's integer grid (inside its range).
    """

    name = "po2.clamp"

    lo_attr = prop_def(IntegerAttr[I64], prop_name="lo")
    hi_attr = prop_def(IntegerAttr[I64], prop_name="hi")
    lo: int = int_property("lo")
    hi: int = int_property("hi")

    PRINTED_PROPERTIES: ClassVar[tuple[str, ...]] = ("lo", "hi")

    def __init__(self, layer: str, input: SSAValue, result_type: ActType, lo: int, hi: int):
        super().__init__(operands=[input], result_types=[result_type], properties={
            "layer": StringAttr(layer), "lo": IntegerAttr(lo, i64), "hi": IntegerAttr(hi, i64)})

    def verify_(self) -> None:
        self.verify_same_shape()
        fmt = _act(self.output, "result", self).fmt
        if not fmt.lo <= self.lo <= self.hi <= fmt.hi:
            raise VerifyException(
                f"{self.name} {_layer_of(self)}: bounds [{self.lo}, {self.hi}] must satisfy "
                f"{fmt.lo} <= lo <= hi <= {fmt.hi} (the result format {fmt})")


@irdl_op_definition
class ConcatOp(LayerOp):
    """
    Channel concatenation `CaxHxW, CbxHxW -> (Ca+Cb)xHxW`; each operand is requantised
    into the result's format, no activation (semantics: Concatenate).
    """

    name = "po2.concat"

    lhs = operand_def(ActType)
    rhs = operand_def(ActType)
    output = result_def(ActType)

    traits = traits_def(Pure())

    def __init__(self, layer: str, lhs: SSAValue, rhs: SSAValue, result_type: ActType):
        super().__init__(
            operands=[lhs, rhs],
            result_types=[result_type],
            properties={"layer": StringAttr(layer)},
        )

    def verify_(self) -> None:
        a, b = _act(self.lhs, "lhs", self), _act(self.rhs, "rhs", self)
        y = _act(self.output, "result", self)
        if len(a.dims) != 3 or len(b.dims) != 3 or a.dims[1:] != b.dims[1:] \
                or y.dims != (a.dims[0] + b.dims[0], *a.dims[1:]):
            raise VerifyException(
                f"{self.name} {_layer_of(self)}: concatenating {list(a.dims)} and "
                f"{list(b.dims)} along channels cannot give {list(y.dims)}"
            )


@irdl_op_definition
class SelectChannelsOp(UnaryLayerOp):
    """
    Output channel `i` is input channel `channels[i]` (a chunk/split piece: a range; a
    channel shuffle: a permutation); the format is unchanged. Wiring in hardware.
    """

    name = "po2.select_channels"

    channels_attr = prop_def(I64Array, prop_name="channels")
    channels: tuple[int, ...] = ints_property("channels")

    traits = traits_def(Pure())
    PRINTED_PROPERTIES: ClassVar[tuple[str, ...]] = ("channels",)

    def __init__(self, layer: str, input: SSAValue, channels: Sequence[int]):
        in_type = SSAValue.get(input).type
        assert isinstance(in_type, ActType)
        super().__init__(
            operands=[input],
            result_types=[ActType([len(channels), *in_type.dims[1:]], in_type.fmt)],
            properties={"layer": StringAttr(layer), "channels": _int_array(channels)},
        )

    def verify_(self) -> None:
        where = f"{self.name} {_layer_of(self)}"
        x, y = _act(self.input, "input", self), _act(self.output, "result", self)
        chans = self.channels
        if len(x.dims) != 3 or not chans:
            raise VerifyException(f"{where}: selects a non-empty channel list of a CxHxW "
                                  f"tensor, got {list(chans)} of {list(x.dims)}")
        bad = [c for c in chans if not 0 <= c < x.dims[0]]
        if bad:
            raise VerifyException(f"{where}: channel {bad[0]} out of range for an input of "
                                  f"{x.dims[0]} channels")
        if y.dims != (len(chans), *x.dims[1:]) or y.fmt != x.fmt:
            raise VerifyException(f"{where}: selecting {len(chans)} channels of {x} must give "
                                  f"{len(chans)}x{x.dims[1]}x{x.dims[2]} in the same format, "
                                  f"got {y}")


@irdl_op_definition
class NpuLinearOp(UnaryLayerOp):
    """
    The classifier on the reprogrammable NPU. Its weights are not frozen: `slot` names the
    weight memory that the chip's write port loads. `weights`/`bias` are the initial
    contents (what the model was trained with), used by simulation and the golden model.
    The result is the integer logits (semantics: NPU linear); its width holds the worst
    case of any weights of `weight_bits` and biases of `bias_bits`.
    """

    name = "po2.npu_linear"

    slot_attr = prop_def(StringAttr, prop_name="slot")
    weight_bits_attr = prop_def(IntegerAttr[I64], prop_name="weight_bits")
    weight_frac_attr = prop_def(IntegerAttr[I64], prop_name="weight_frac")
    bias_bits_attr = prop_def(IntegerAttr[I64], prop_name="bias_bits")
    weights_attr = prop_def(DenseIntOrFPElementsAttr, prop_name="weights")
    bias_attr = prop_def(I64Array, prop_name="bias")

    slot: str = str_property("slot")
    weight_bits: int = int_property("weight_bits")
    weight_frac: int = int_property("weight_frac")
    bias_bits: int = int_property("bias_bits")
    weight_matrix: np.ndarray = tensor_property("weights")
    """The initial weights, int64 (outputs, inputs)."""
    bias: tuple[int, ...] = ints_property("bias")

    traits = traits_def(Pure())
    PRINTED_PROPERTIES: ClassVar[tuple[str, ...]] = ("slot", "weight_bits", "weight_frac", "bias_bits", "bias", "weights")

    def __init__(
        self,
        layer: str,
        input: SSAValue,
        *,
        weights: np.ndarray,
        bias: Sequence[int],
        weight_frac: int,
        weight_bits: int = 8,
        bias_bits: int = 24,
        slot: str = "classifier",
    ):
        in_type = SSAValue.get(input).type
        assert isinstance(in_type, ActType)
        weights = np.asarray(weights)
        n, k = weights.shape
        logit_bits = npu_logit_bits(k, in_type.fmt, weight_bits, bias_bits)
        out = ActType([n], Format(logit_bits, True, in_type.fmt.frac + weight_frac))
        super().__init__(
            operands=[input],
            result_types=[out],
            properties={
                "layer": StringAttr(layer),
                "slot": StringAttr(slot),
                "weight_bits": IntegerAttr(weight_bits, i64),
                "weight_frac": IntegerAttr(weight_frac, i64),
                "bias_bits": IntegerAttr(bias_bits, i64),
                "bias": _int_array(bias),
                "weights": _dense(weights, i32),
            },
        )

    def verify_(self) -> None:
        where = f"{self.name} {_layer_of(self)}"
        x, y = _act(self.input, "input", self), _act(self.output, "result", self)
        if len(x.dims) != 1:
            raise VerifyException(f"{where}: input must be a vector (flatten first), got {list(x.dims)}")
        shape = tuple(self.weights_attr.get_shape())
        if len(shape) != 2 or shape[1] != x.dims[0] or (shape[0],) != y.dims:
            raise VerifyException(
                f"{where}: weights {list(shape)} must be [outputs {y.dims[0]}, inputs {x.dims[0]}]"
            )
        wbits, bbits = self.weight_bits, self.bias_bits
        if not (2 <= wbits <= 32 and 2 <= bbits <= 48):
            raise VerifyException(f"{where}: weight_bits {wbits} / bias_bits {bbits} out of range")
        w_lo, w_hi = type_range(wbits, True)
        weights = self.weight_matrix
        if weights.size and (weights.min() < w_lo or weights.max() > w_hi):
            raise VerifyException(
                f"{where}: a weight lies outside the NPU's {wbits}-bit range [{w_lo}, {w_hi}]"
            )
        bias = self.bias
        b_lo, b_hi = type_range(bbits, True)
        if len(bias) != y.dims[0] or any(not b_lo <= b <= b_hi for b in bias):
            raise VerifyException(
                f"{where}: bias needs {y.dims[0]} values in the {bbits}-bit range [{b_lo}, {b_hi}]"
            )
        need = npu_logit_bits(x.dims[0], x.fmt, wbits, bbits)
        expected_frac = x.fmt.frac + self.weight_frac
        if not y.fmt.signed or y.fmt.bits < need or y.fmt.frac != expected_frac:
            raise VerifyException(
                f"{where}: logits must be signed with at least {need} bits and frac "
                f"{expected_frac}, got {y}"
            )


# ---------------------------------------------------------------------------
# Unrolled level: scalar ops on exact-width integers
# ---------------------------------------------------------------------------


def _int_type(value: SSAValue, what: str, op: Operation) -> IntegerType:
    typ = value.type
    if not isinstance(typ, IntegerType) or typ.signedness.data == Signedness.SIGNLESS:
        raise VerifyException(f"{op.name}: {what} must be a signed or unsigned integer (si/ui), got {typ}")
    return typ


def int_type_range(typ: IntegerType) -> tuple[int, int]:
    return type_range(typ.width.data, typ.signedness.data == Signedness.SIGNED)


def value_range(value: SSAValue) -> tuple[int, int]:
    """
    The values a scalar can take, as the verifiers see them: a constant is exact, a
    rescale is bounded by its clamp, anything else by its type. po2-infer-widths uses
    the same rule, so the widths it picks always verify.
    """
    owner = value.owner
    if isinstance(owner, ConstOp):
        return owner.value, owner.value
    if isinstance(owner, RescaleOp):
        return owner.lo, owner.hi
    typ = value.type
    assert isinstance(typ, IntegerType)
    return int_type_range(typ)


class ScalarOp(IRDLOperation):
    """
    Base of the scalar ops: the result type must hold every value the op can produce
    from its operands' ranges (`result_range`); nothing ever wraps.
    """

    def result_range(self) -> tuple[int, int]:
        raise NotImplementedError

    def verify_(self) -> None:
        for i, operand in enumerate(self.operands):
            _int_type(operand, f"operand #{i}", self)
        result = self.results[0]
        typ = _int_type(result, "result", self)
        lo, hi = self.result_range()
        t_lo, t_hi = int_type_range(typ)
        if lo < t_lo or hi > t_hi:
            need = scalar_type_for_range(lo, hi)
            raise VerifyException(
                f"{self.name}: result type {typ} cannot hold the range [{lo}, {hi}] of its "
                f"operands (needs at least {need}): it could overflow"
            )


@irdl_op_definition
class ConstOp(ScalarOp):
    """An integer constant (a bias term): `po2.const 37 : ui6`."""

    name = "po2.const"

    value_attr = prop_def(IntegerAttr[I64], prop_name="value")
    result = result_def(IntegerType)

    value: int = int_property("value")

    traits = traits_def(Pure())

    def __init__(self, value: int, typ: IntegerType | None = None):
        typ = typ or scalar_type_for_range(min(value, 0) if value < 0 else value, value)
        super().__init__(result_types=[typ], properties={"value": IntegerAttr(value, i64)})

    def result_range(self) -> tuple[int, int]:
        return self.value, self.value

    def print(self, printer: Printer) -> None:
        printer.print_string(f" {self.value} : ")
        printer.print_attribute(self.result.type)

    @classmethod
    def parse(cls, parser: Parser) -> ConstOp:
        value = parser.parse_integer(allow_boolean=False)
        parser.parse_punctuation(":")
        typ = parser.parse_type()
        if not isinstance(typ, IntegerType):
            parser.raise_error(f"po2.const needs an integer type, got {typ}")
        return cls(value, typ)


class UnaryScalarOp(ScalarOp):
    """
    Base of the scalar ops on one operand with integer properties, and their shared custom
    format: `po2.<op> %x, <properties> : ti -> tr`. Subclasses print and parse the
    properties part (`print_properties`, `parse_properties`); their constructor takes the
    operand, the properties' values in that order, then the result type.
    """

    input = operand_def(IntegerType)
    result = result_def(IntegerType)

    traits = traits_def(Pure())

    def print_properties(self, printer: Printer) -> None:
        raise NotImplementedError

    @classmethod
    def parse_properties(cls, parser: Parser) -> tuple[int, ...]:
        raise NotImplementedError

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_operand(self.input)
        self.print_properties(printer)
        printer.print_string(" : ")
        printer.print_attribute(self.input.type)
        printer.print_string(" -> ")
        printer.print_attribute(self.result.type)

    @classmethod
    def parse(cls, parser: Parser):
        operand = parser.parse_unresolved_operand()
        values = cls.parse_properties(parser)
        parser.parse_punctuation(":")
        in_type = parser.parse_type()
        parser.parse_punctuation("->")
        out_type = parser.parse_type()
        (resolved,) = parser.resolve_operands([operand], [in_type], parser.pos)
        return cls(resolved, *values, typ=out_type)


@irdl_op_definition
class ShlOp(UnaryScalarOp):
    """Multiply by 2^amount (wiring in hardware): `po2.shl %x, 3 : ui8 -> ui11`."""

    name = "po2.shl"

    amount_attr = prop_def(IntegerAttr[I64], prop_name="amount")

    amount: int = int_property("amount")

    def __init__(self, input: SSAValue, amount: int, typ: Attribute | None = None):
        if typ is None:
            lo, hi = value_range(input)
            typ = scalar_type_for_range(lo << amount, hi << amount)
        super().__init__(
            operands=[input], result_types=[typ], properties={"amount": IntegerAttr(amount, i64)}
        )

    def result_range(self) -> tuple[int, int]:
        lo, hi = value_range(self.input)
        return lo << self.amount, hi << self.amount

    def verify_(self) -> None:
        if self.amount < 0:
            raise VerifyException(f"po2.shl: shift amount {self.amount} must be >= 0")
        super().verify_()

    def print_properties(self, printer: Printer) -> None:
        printer.print_string(f", {self.amount}")

    @classmethod
    def parse_properties(cls, parser: Parser) -> tuple[int, ...]:
        parser.parse_punctuation(",")
        return (parser.parse_integer(allow_boolean=False),)


class NaryScalarOp(ScalarOp):
    """Shared custom format of scalar ops: `po2.<op> %a, %b : (ta, tb) -> tr`."""

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_list(self.operands, printer.print_operand)
        printer.print_string(" : ")
        if len(self.operands) == 1:
            printer.print_attribute(self.operands[0].type)
        else:
            printer.print_string("(")
            printer.print_list((o.type for o in self.operands), printer.print_attribute)
            printer.print_string(")")
        printer.print_string(" -> ")
        printer.print_attribute(self.results[0].type)

    @classmethod
    def parse(cls, parser: Parser):
        operands = parser.parse_comma_separated_list(
            parser.Delimiter.NONE, parser.parse_unresolved_operand
        )
        parser.parse_punctuation(":")
        if parser.parse_optional_punctuation("(") is not None:
            in_types = parser.parse_comma_separated_list(parser.Delimiter.NONE, parser.parse_type)
            parser.parse_punctuation(")")
        else:
            in_types = [parser.parse_type()]
        parser.parse_punctuation("->")
        out_type = parser.parse_type()
        if len(in_types) != len(operands):
            parser.raise_error(f"{len(operands)} operands but {len(in_types)} types")
        resolved = parser.resolve_operands(operands, in_types, parser.pos)
        return cls.create(operands=resolved, result_types=[out_type])


class BinaryScalarOp(NaryScalarOp):
    """
    Base of the exact two-operand ops (like xDSL's BinCombOperation): the result's range is
    `combine` of the operands' ranges, and by default its type is the narrowest holding it.
    """

    lhs = operand_def(IntegerType)
    rhs = operand_def(IntegerType)
    result = result_def(IntegerType)

    traits = traits_def(Pure())

    @staticmethod
    def combine(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
        """The range of the result from the ranges (lo, hi) of lhs and rhs."""
        raise NotImplementedError

    def __init__(self, lhs: SSAValue, rhs: SSAValue, typ: IntegerType | None = None):
        typ = typ or scalar_type_for_range(*self.combine(value_range(lhs), value_range(rhs)))
        super().__init__(operands=[lhs, rhs], result_types=[typ])

    def result_range(self) -> tuple[int, int]:
        return self.combine(value_range(self.lhs), value_range(self.rhs))


@irdl_op_definition
class AddOp(BinaryScalarOp):
    """Exact sum of two integers: `po2.add %a, %b : (ui8, si9) -> si10`."""

    name = "po2.add"

    @staticmethod
    def combine(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
        return a[0] + b[0], a[1] + b[1]


@irdl_op_definition
class SubOp(BinaryScalarOp):
    """Exact difference: `po2.sub %a, %b : (ui8, ui8) -> si9`."""

    name = "po2.sub"

    @staticmethod
    def combine(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
        return a[0] - b[1], a[1] - b[0]


@irdl_op_definition
class NegOp(NaryScalarOp):
    """Exact negation: `po2.neg %a : ui8 -> si9`."""

    name = "po2.neg"

    input = operand_def(IntegerType)
    result = result_def(IntegerType)

    traits = traits_def(Pure())

    def __init__(self, input: SSAValue, typ: IntegerType | None = None):
        lo, hi = value_range(input)
        typ = typ or scalar_type_for_range(-hi, -lo)
        super().__init__(operands=[input], result_types=[typ])

    def result_range(self) -> tuple[int, int]:
        lo, hi = value_range(self.input)
        return -hi, -lo


@irdl_op_definition
class SumOp(NaryScalarOp):
    """
    Exact n-ary sum, the form an adder tree takes before it is balanced and pipelined in
    the lowering: `po2.sum %a, %b, %c : (ui8, ui9, si7) -> si11`.
    """

    name = "po2.sum"

    inputs = var_operand_def(IntegerType)
    result = result_def(IntegerType)

    traits = traits_def(Pure())

    def __init__(self, inputs: Sequence[SSAValue], typ: IntegerType | None = None):
        if typ is None:
            # Only when no type is given: over thousands of operands this walk dominates.
            ranges = [value_range(v) for v in inputs]
            typ = scalar_type_for_range(sum(r[0] for r in ranges), sum(r[1] for r in ranges))
        super().__init__(operands=[list(inputs)], result_types=[typ])

    def result_range(self) -> tuple[int, int]:
        ranges = [value_range(v) for v in self.inputs]
        return sum(r[0] for r in ranges), sum(r[1] for r in ranges)

    def verify_(self) -> None:
        if not self.inputs:
            raise VerifyException("po2.sum needs at least one operand")
        super().verify_()


@irdl_op_definition
class RescaleOp(UnaryScalarOp):
    """
    Requantise one accumulator: `saturate(round_shift(x, shift), lo, hi)` (semantics:
    round half up, then saturate; the clamp includes ReLU/ReLU6).

        %y = po2.rescale %acc, 5 clamp [0, 255] : si14 -> ui8
    """

    name = "po2.rescale"

    shift_attr = prop_def(IntegerAttr[I64], prop_name="shift")
    lo_attr = prop_def(IntegerAttr[I64], prop_name="lo")
    hi_attr = prop_def(IntegerAttr[I64], prop_name="hi")

    shift: int = int_property("shift")
    lo: int = int_property("lo")
    hi: int = int_property("hi")

    def __init__(self, input: SSAValue, shift: int, lo: int, hi: int, typ: Attribute | None = None):
        typ = typ or scalar_type_for_range(lo, hi)
        super().__init__(
            operands=[input],
            result_types=[typ],
            properties={
                "shift": IntegerAttr(shift, i64),
                "lo": IntegerAttr(lo, i64),
                "hi": IntegerAttr(hi, i64),
            },
        )

    def result_range(self) -> tuple[int, int]:
        return self.lo, self.hi

    def verify_(self) -> None:
        if self.lo > self.hi:
            raise VerifyException(f"po2.rescale: clamp [{self.lo}, {self.hi}] is empty")
        super().verify_()

    def print_properties(self, printer: Printer) -> None:
        printer.print_string(f", {self.shift} clamp [{self.lo}, {self.hi}]")

    @classmethod
    def parse_properties(cls, parser: Parser) -> tuple[int, ...]:
        parser.parse_punctuation(",")
        shift = parser.parse_integer(allow_boolean=False)
        parser.parse_keyword("clamp")
        parser.parse_punctuation("[")
        lo = parser.parse_integer(allow_boolean=False)
        parser.parse_punctuation(",")
        hi = parser.parse_integer(allow_boolean=False)
        parser.parse_punctuation("]")
        return shift, lo, hi


@irdl_op_definition
class YieldOp(IRDLOperation):
    """Ends an unrolled datapath: one value per output channel."""

    name = "po2.yield"

    values = var_operand_def(IntegerType)

    traits = lazy_traits_def(lambda: (IsTerminator(), Pure(), HasParent(UnrolledConv2dOp)))

    assembly_format = "$values attr-dict `:` type($values)"

    def __init__(self, values: Sequence[SSAValue]):
        super().__init__(operands=[list(values)])


@irdl_op_definition
class UnrolledConv2dOp(ConvLikeOp):
    """
    A convolution unrolled into its per-pixel datapath. The layer's geometry (kernel,
    stride, padding, groups) stays on the op; the lowering builds the line buffers and the
    window from it. The region computes one output pixel: its block arguments are the
    window's values, ordered (input channel, kernel row, kernel column), zero where the
    window hangs over the padding; it yields one value per output channel, already
    requantised into the result's format.
    """

    name = "po2.unrolled_conv2d"

    body = region_def("single_block")

    PRINTED_PROPERTIES: ClassVar[tuple[str, ...]] = ("kernel", "stride", "padding", "groups", "act")

    def __init__(
        self,
        layer: str,
        input: SSAValue,
        result_type: ActType,
        *,
        kernel: tuple[int, int],
        stride: tuple[int, int],
        padding: tuple[int, int, int, int],
        groups: int,
        act: str,
        body: Region,
    ):
        super().__init__(
            operands=[input],
            result_types=[result_type],
            properties=self.geometry_properties(layer, kernel, stride, padding, groups, act),
            regions=[body],
        )

    def verify_(self) -> None:
        self.verify_geometry()
        where = f"{self.name} {_layer_of(self)}"
        in_t, out_t = _act(self.input, "input", self), _act(self.output, "result", self)
        kh, kw = self.kernel
        block = self.body.block
        expected_args = in_t.dims[0] * kh * kw
        if len(block.args) != expected_args:
            raise VerifyException(
                f"{where}: the datapath takes {len(block.args)} window values, expected "
                f"{expected_args} (channels {in_t.dims[0]} x kernel {kh}x{kw})"
            )
        in_scalar = scalar_type(in_t.fmt.bits, in_t.fmt.signed)
        for arg in block.args:
            if arg.type != in_scalar:
                raise VerifyException(
                    f"{where}: window value of type {arg.type} does not match the input "
                    f"format {in_scalar}"
                )
        terminator = block.last_op
        if not isinstance(terminator, YieldOp):
            raise VerifyException(f"{where}: the datapath must end with po2.yield")
        out_scalar = scalar_type(out_t.fmt.bits, out_t.fmt.signed)
        if len(terminator.values) != out_t.dims[0]:
            raise VerifyException(
                f"{where}: the datapath yields {len(terminator.values)} values, expected one "
                f"per output channel ({out_t.dims[0]})"
            )
        for o, value in enumerate(terminator.values):
            lo, hi = value_range(value)
            if lo < out_t.fmt.lo or hi > out_t.fmt.hi:
                raise VerifyException(
                    f"{where}: output channel {o} has range [{lo}, {hi}], outside the result "
                    f"format {out_t.fmt} ({out_scalar})"
                )


Po2 = Dialect(
    "po2",
    [
        Conv2dOp,
        ResidualAddOp,
        RequantOp,
        AvgPoolOp,
        FlattenOp,
        MaxPool2dOp,
        AvgPool2dOp,
        LeakyReluOp,
        ClampOp,
        ConcatOp,
        SelectChannelsOp,
        NpuLinearOp,
        UnrolledConv2dOp,
        ConstOp,
        ShlOp,
        AddOp,
        SubOp,
        NegOp,
        SumOp,
        RescaleOp,
        YieldOp,
    ],
    [ActType],
)
