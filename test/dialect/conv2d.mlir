// RUN: po2-opt %s | po2-opt | filecheck %s
// A frozen Po2 convolution: codes (i8), per-channel exponent base, shift and bias.

// CHECK-LABEL: func.func @conv
// CHECK-NEXT:    %{{.*}} = po2.conv2d "features.0" %{{.*}} kernel [3, 3] stride [2, 1] padding [1, 0, 1, 2] groups 2 act "relu6" exp_bits 3 exp_base [0, -1] shift [1, 2] bias [5, -3] weights dense<{{\[}}{{.*}}]> : tensor<2x1x3x3xi8> : !po2.act<2x5x5, u8, 4> -> !po2.act<2x3x5, u8, 3>
func.func @conv(%x: !po2.act<2x5x5, u8, 4>) -> !po2.act<2x3x5, u8, 3> {
  %y = po2.conv2d "features.0" %x kernel [3, 3] stride [2, 1] padding [1, 0, 1, 2] groups 2 act "relu6" exp_bits 3 exp_base [0, -1] shift [1, 2] bias [5, -3] weights dense<[[[[1, 0, -1], [2, -8, 8], [0, 0, 3]]], [[[0, 0, 0], [0, 4, 0], [-2, 0, 0]]]]> : tensor<2x1x3x3xi8> : !po2.act<2x5x5, u8, 4> -> !po2.act<2x3x5, u8, 3>
  func.return %y : !po2.act<2x3x5, u8, 3>
}

// Large weight tensors print as hex and parse back.
// CHECK-LABEL: func.func @pointwise
// CHECK:         po2.conv2d "pw" %{{.*}} kernel [1, 1] {{.*}} weights dense<"0x{{[0-9A-F]+}}"> : tensor<20x16x1x1xi8>
func.func @pointwise(%x: !po2.act<16x2x2, s8, 2>) -> !po2.act<20x2x2, s8, 2> {
  %y = po2.conv2d "pw" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" exp_bits 3 exp_base [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] shift [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] bias [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] weights dense<1> : tensor<20x16x1x1xi8> : !po2.act<16x2x2, s8, 2> -> !po2.act<20x2x2, s8, 2>
  func.return %y : !po2.act<20x2x2, s8, 2>
}
