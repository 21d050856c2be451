// RUN: po2-opt %s -p po2-unroll | filecheck %s
// Groups: output channel o reads only the window values of its group's input channels.
// A depthwise 3x3 conv on 2 channels: channel 0 uses arguments 0..8, channel 1 9..17.
// Signed input (s8, a linear bottleneck): the sums are signed from the start.

// CHECK-LABEL: func.func @dw
// CHECK:         po2.unrolled_conv2d "dw" %{{.*}} kernel [3, 3] stride [2, 2] padding [1, 1, 1, 1] groups 2 act "none"
// CHECK-NEXT:    ^bb0(%[[A0:[0-9]+]]: si8, %{{[0-9]+}}: si8, %{{[0-9]+}}: si8, %{{[0-9]+}}: si8, %[[A4:[0-9]+]]: si8, %{{[0-9]+}}: si8, %{{[0-9]+}}: si8, %{{[0-9]+}}: si8, %{{[0-9]+}}: si8, %[[B0:[0-9]+]]: si8, %{{[0-9]+}}: si8, %{{[0-9]+}}: si8, %{{[0-9]+}}: si8, %{{[0-9]+}}: si8, %{{[0-9]+}}: si8, %{{[0-9]+}}: si8, %{{[0-9]+}}: si8, %[[B8:[0-9]+]]: si8):
// Channel 0: center tap x2 minus corner tap.
// CHECK-NEXT:      %[[S:.*]] = po2.shl %[[A4]], 1 : si8 -> si9
// CHECK-NEXT:      %[[D0:.*]] = po2.sub %[[S]], %[[A0]] : (si9, si8) -> si10
// CHECK-NEXT:      %[[R0:.*]] = po2.rescale %[[D0]], 0 clamp [-128, 127] : si10 -> si8
// Channel 1: first and last taps of its own channel.
// CHECK-NEXT:      %[[P1:.*]] = po2.sum %[[B0]], %[[B8]] : (si8, si8) -> si9
// CHECK-NEXT:      %[[R1:.*]] = po2.rescale %[[P1]], 1 clamp [-128, 127] : si9 -> si8
// CHECK-NEXT:      po2.yield %[[R0]], %[[R1]] : si8, si8
func.func @dw(%x: !po2.act<2x5x5, s8, 3>) -> !po2.act<2x3x3, s8, 3> {
  %y = po2.conv2d "dw" %x kernel [3, 3] stride [2, 2] padding [1, 1, 1, 1] groups 2 act "none" exp_bits 3 exp_base [0, -1] shift [0, 1] bias [0, 0] weights dense<[[[[-1, 0, 0], [0, 2, 0], [0, 0, 0]]], [[[1, 0, 0], [0, 0, 0], [0, 0, 1]]]]> : tensor<2x1x3x3xi8> : !po2.act<2x5x5, s8, 3> -> !po2.act<2x3x3, s8, 3>
  func.return %y : !po2.act<2x3x3, s8, 3>
}

// Every po2.conv2d is unrolled; the other layer ops are left as they are.
// CHECK-LABEL: func.func @two_layers
// CHECK:         %[[C1:.*]] = po2.unrolled_conv2d "c1"
// CHECK:         %[[Q:.*]] = po2.requant "q" %[[C1]]
// CHECK:         po2.unrolled_conv2d "c2" %[[Q]]
// CHECK-NOT:     po2.conv2d
func.func @two_layers(%x: !po2.act<1x2x2, u8, 0>) -> !po2.act<1x2x2, u8, 0> {
  %a = po2.conv2d "c1" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "relu" exp_bits 3 exp_base [0] shift [0] bias [0] weights dense<1> : tensor<1x1x1x1xi8> : !po2.act<1x2x2, u8, 0> -> !po2.act<1x2x2, u8, 0>
  %q = po2.requant "q" %a act "none" : !po2.act<1x2x2, u8, 0> -> !po2.act<1x2x2, u8, 0>
  %b = po2.conv2d "c2" %q kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "relu" exp_bits 3 exp_base [0] shift [0] bias [0] weights dense<-1> : tensor<1x1x1x1xi8> : !po2.act<1x2x2, u8, 0> -> !po2.act<1x2x2, u8, 0>
  func.return %b : !po2.act<1x2x2, u8, 0>
}
