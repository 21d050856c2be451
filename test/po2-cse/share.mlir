// RUN: po2-opt %s -p po2-unroll,po2-canonicalize,po2-cse,po2-infer-widths | filecheck %s
// Three output channels hold the pattern x0 + 2*x1: as it is (channel 0), shifted left by
// one (channel 1: 2*x0 + 4*x1) and negated (channel 2: -x0 - 2*x1). po2-cse builds it once
// (one po2.add) and the channels use it shifted and subtracted: 4 adders instead of 6.

// CHECK-LABEL: func.func @conv
// CHECK:         ^bb0(%[[X0:.*]]: ui8, %[[X1:.*]]: ui8, %[[X2:.*]]: ui8):
// CHECK-NEXT:      %[[S1:.*]] = po2.shl %[[X1]], 1 : ui8 -> ui9
// CHECK-NEXT:      %[[T:.*]] = po2.add %[[X0]], %[[S1]] : (ui8, ui9) -> ui10
// Channel 0 is the shared term itself.
// CHECK-NEXT:      %[[R0:.*]] = po2.rescale %[[T]], 1 clamp [-128, 127] : ui10 -> si8
// Channel 1: x2 + (t << 1).
// CHECK-NEXT:      %[[T1:.*]] = po2.shl %[[T]], 1 : ui10 -> ui11
// CHECK-NEXT:      %[[A1:.*]] = po2.sum %[[X2]], %[[T1]] : (ui8, ui11) -> ui12
// CHECK-NEXT:      %[[R1:.*]] = po2.rescale %[[A1]], 1 clamp [-128, 127] : ui12 -> si8
// Channel 2: x2 - t; the interval rule makes the difference signed and one bit wider.
// CHECK-NEXT:      %[[A2:.*]] = po2.sub %[[X2]], %[[T]] : (ui8, ui10) -> si11
// CHECK-NEXT:      %[[R2:.*]] = po2.rescale %[[A2]], 1 clamp [-128, 127] : si11 -> si8
// CHECK-NEXT:      po2.yield %[[R0]], %[[R1]], %[[R2]] : si8, si8, si8
func.func @conv(%x: !po2.act<3x2x2, u8, 4>) -> !po2.act<3x2x2, s8, 3> {
  %y = po2.conv2d "pw" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" exp_bits 3 exp_base [0, 0, 0] shift [1, 1, 1] bias [0, 0, 0] weights dense<[[[[1]], [[2]], [[0]]], [[[2]], [[3]], [[1]]], [[[-1]], [[-2]], [[1]]]]> : tensor<3x3x1x1xi8> : !po2.act<3x2x2, u8, 4> -> !po2.act<3x2x2, s8, 3>
  func.return %y : !po2.act<3x2x2, s8, 3>
}
