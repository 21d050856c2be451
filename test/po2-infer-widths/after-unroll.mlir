// RUN: po2-opt %s -p po2-unroll,po2-canonicalize,po2-infer-widths | filecheck %s
// The full flow on one layer: po2-unroll's widths are already exact for the adders; the
// pass narrows the rescales to their clamps (relu6 at frac 4: [0, 96], ui7).

// CHECK-LABEL: func.func @layer
// CHECK:         ^bb0(%[[A:.*]]: ui8, %[[B:.*]]: ui8):
// CHECK-NEXT:      %[[S:.*]] = po2.shl %[[B]], 2 : ui8 -> ui10
// CHECK-NEXT:      %[[D:.*]] = po2.sub %[[A]], %[[S]] : (ui8, ui10) -> si11
// CHECK-NEXT:      %[[R0:.*]] = po2.rescale %[[D]], 0 clamp [0, 96] : si11 -> ui7
// CHECK-NEXT:      %[[C:.*]] = po2.const 3 : ui2
// The rescale range is its clamp, whatever its input (the rule of value_range).
// CHECK-NEXT:      %[[R1:.*]] = po2.rescale %[[C]], 0 clamp [0, 96] : ui2 -> ui7
// CHECK-NEXT:      po2.yield %[[R0]], %[[R1]] : ui7, ui7
func.func @layer(%x: !po2.act<2x3x3, u8, 4>) -> !po2.act<2x3x3, u8, 4> {
  %y = po2.conv2d "c" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "relu6" exp_bits 3 exp_base [0, 0] shift [0, 0] bias [0, 3] weights dense<[[[[1]], [[-3]]], [[[0]], [[0]]]]> : tensor<2x2x1x1xi8> : !po2.act<2x3x3, u8, 4> -> !po2.act<2x3x3, u8, 4>
  func.return %y : !po2.act<2x3x3, u8, 4>
}
