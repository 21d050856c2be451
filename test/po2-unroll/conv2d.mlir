// RUN: po2-opt %s -p po2-unroll | filecheck %s
// Each output channel becomes sum(positive terms) - sum(negative terms), then a rescale.
// Block arguments are the window values in (input channel, kernel row, kernel column)
// order: here x0[0], x0[1], x1[0], x1[1] for a 1x2 kernel on 2 input channels.

// CHECK-LABEL: func.func @conv
// CHECK-NEXT:    %{{.*}} = po2.unrolled_conv2d "features.0" %{{.*}} kernel [1, 2] stride [1, 2] padding [0, 1, 0, 0] groups 1 act "relu6" : !po2.act<2x3x4, u8, 4> -> !po2.act<4x3x2, u8, 3> {
// CHECK-NEXT:    ^bb0(%[[X00:.*]]: ui8, %[[X01:.*]]: ui8, %[[X10:.*]]: ui8, %[[X11:.*]]: ui8):
// Channel 0: codes [[1, 2], [0, -3]], bias 5: x00 + (x01 << 1) + 5 - (x11 << 2).
// The code 1 is the argument itself; the zero code has no op.
// CHECK-NEXT:      %[[S01:.*]] = po2.shl %[[X01]], 1 : ui8 -> ui9
// CHECK-NEXT:      %[[S11:.*]] = po2.shl %[[X11]], 2 : ui8 -> ui10
// CHECK-NEXT:      %[[B0:.*]] = po2.const 5 : ui3
// CHECK-NEXT:      %[[P0:.*]] = po2.sum %[[X00]], %[[S01]], %[[B0]] : (ui8, ui9, ui3) -> ui10
// CHECK-NEXT:      %[[A0:.*]] = po2.sub %[[P0]], %[[S11]] : (ui10, ui10) -> si11
// The shift is Fx - Fy - exp_base = 4 - 3 - 0, the relu6 clamp [0, 6 * 2^3].
// CHECK-NEXT:      %[[R0:.*]] = po2.rescale %[[A0]], 1 clamp [0, 48] : si11 -> ui8
// Channel 1: no nonzero weight: the requantised bias.
// CHECK-NEXT:      %[[B1:.*]] = po2.const -7 : si4
// CHECK-NEXT:      %[[R1:.*]] = po2.rescale %[[B1]], 2 clamp [0, 48] : si4 -> ui8
// Channel 2: only negative terms: one neg of their sum. x01 << 1 is shared with channel 0.
// CHECK-NEXT:      %[[N2:.*]] = po2.sum %[[S01]], %[[X10]] : (ui9, ui8) -> ui10
// CHECK-NEXT:      %[[A2:.*]] = po2.neg %[[N2]] : ui10 -> si11
// CHECK-NEXT:      %[[R2:.*]] = po2.rescale %[[A2]], 0 clamp [0, 48] : si11 -> ui8
// Channel 3: negative bias goes to the negative sum; extreme codes +-8 shift by 7.
// CHECK-NEXT:      %[[S00:.*]] = po2.shl %[[X00]], 7 : ui8 -> ui15
// CHECK-NEXT:      %[[S10:.*]] = po2.shl %[[X10]], 7 : ui8 -> ui15
// CHECK-NEXT:      %[[B3:.*]] = po2.const 100 : ui7
// CHECK-NEXT:      %[[N3:.*]] = po2.sum %[[S10]], %[[B3]] : (ui15, ui7) -> ui16
// CHECK-NEXT:      %[[A3:.*]] = po2.sub %[[S00]], %[[N3]] : (ui15, ui16) -> si17
// CHECK-NEXT:      %[[R3:.*]] = po2.rescale %[[A3]], 5 clamp [0, 48] : si17 -> ui8
// CHECK-NEXT:      po2.yield %[[R0]], %[[R1]], %[[R2]], %[[R3]] : ui8, ui8, ui8, ui8
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return
func.func @conv(%x: !po2.act<2x3x4, u8, 4>) -> !po2.act<4x3x2, u8, 3> {
  %y = po2.conv2d "features.0" %x kernel [1, 2] stride [1, 2] padding [0, 1, 0, 0] groups 1 act "relu6" exp_bits 3 exp_base [0, -1, 1, -4] shift [1, 2, 0, 5] bias [5, -7, 0, -100] weights dense<[[[[1, 2]], [[0, -3]]], [[[0, 0]], [[0, 0]]], [[[0, -2]], [[-1, 0]]], [[[8, 0]], [[-8, 0]]]]> : tensor<4x2x1x2xi8> : !po2.act<2x3x4, u8, 4> -> !po2.act<4x3x2, u8, 3>
  func.return %y : !po2.act<4x3x2, u8, 3>
}
