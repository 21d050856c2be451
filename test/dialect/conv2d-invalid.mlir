// RUN: po2-opt %s --split-input-file --verify-diagnostics | filecheck %s
// One case per verifier rule of po2.conv2d, including the geometry it shares with
// po2.unrolled_conv2d. Each message names the op, the layer and the rule.

func.func @f(%x: !po2.act<2x4x4, u8, 4>) {
  %y = po2.conv2d "c" %x kernel [3, 3] stride [1, 1] padding [1, 1, 1, 1] groups 1 act "gelu" exp_bits 3 exp_base [0, 0] shift [0, 0] bias [0, 0] weights dense<1> : tensor<2x2x3x3xi8> : !po2.act<2x4x4, u8, 4> -> !po2.act<2x4x4, u8, 4>
  func.return
}
// CHECK: po2.conv2d 'c': activation 'gelu' is not one of none, relu, relu6

// -----

func.func @f(%x: !po2.act<2x4x4, u8, 4>) {
  %y = po2.conv2d "c" %x kernel [3, 3] stride [1, 1] padding [1, 1, 1, 1] groups 1 act "none" exp_bits 3 exp_base [0, 0] shift [0, 0] bias [0, 0] weights dense<1> : tensor<2x2x3x3xi8> : !po2.act<2x4x4, u8, 4> -> !po2.act<32, u8, 4>
  func.return
}
// CHECK: po2.conv2d 'c': input and result must be CxHxW tensors

// -----

func.func @f(%x: !po2.act<2x4x4, u8, 4>) {
  %y = po2.conv2d "c" %x kernel [3] stride [1, 1] padding [1, 1, 1, 1] groups 1 act "none" exp_bits 3 exp_base [0, 0] shift [0, 0] bias [0, 0] weights dense<1> : tensor<2x2x3x3xi8> : !po2.act<2x4x4, u8, 4> -> !po2.act<2x4x4, u8, 4>
  func.return
}
// CHECK: po2.conv2d 'c': kernel and stride need two values (h, w)

// -----

func.func @f(%x: !po2.act<2x4x4, u8, 4>) {
  %y = po2.conv2d "c" %x kernel [3, 3] stride [1, 1] padding [1, 1] groups 1 act "none" exp_bits 3 exp_base [0, 0] shift [0, 0] bias [0, 0] weights dense<1> : tensor<2x2x3x3xi8> : !po2.act<2x4x4, u8, 4> -> !po2.act<2x4x4, u8, 4>
  func.return
}
// CHECK: po2.conv2d 'c': padding needs four values (top, left, bottom, right)

// -----

func.func @f(%x: !po2.act<2x4x4, u8, 4>) {
  %y = po2.conv2d "c" %x kernel [3, 3] stride [0, 1] padding [1, 1, 1, 1] groups 1 act "none" exp_bits 3 exp_base [0, 0] shift [0, 0] bias [0, 0] weights dense<1> : tensor<2x2x3x3xi8> : !po2.act<2x4x4, u8, 4> -> !po2.act<2x4x4, u8, 4>
  func.return
}
// CHECK: po2.conv2d 'c': kernel and stride must be >= 1, padding >= 0

// -----

func.func @f(%x: !po2.act<2x4x4, u8, 4>) {
  %y = po2.conv2d "c" %x kernel [3, 3] stride [1, 1] padding [1, 1, 1, 1] groups 3 act "none" exp_bits 3 exp_base [0, 0] shift [0, 0] bias [0, 0] weights dense<1> : tensor<2x2x3x3xi8> : !po2.act<2x4x4, u8, 4> -> !po2.act<2x4x4, u8, 4>
  func.return
}
// CHECK: po2.conv2d 'c': groups=3 must divide input channels 2 and output channels 2

// -----

func.func @f(%x: !po2.act<2x4x4, u8, 4>) {
  %y = po2.conv2d "c" %x kernel [3, 3] stride [1, 1] padding [1, 1, 1, 1] groups 1 act "none" exp_bits 3 exp_base [0, 0] shift [0, 0] bias [0, 0] weights dense<1> : tensor<2x2x3x3xi8> : !po2.act<2x4x4, u8, 4> -> !po2.act<2x5x5, u8, 4>
  func.return
}
// CHECK: po2.conv2d 'c': result is 5x5 but a 3x3 kernel with stride 1x1 and padding [1, 1, 1, 1] on 4x4 gives 4x4

// -----

func.func @f(%x: !po2.act<2x4x4, u8, 4>) {
  %y = po2.conv2d "c" %x kernel [3, 3] stride [1, 1] padding [1, 1, 1, 1] groups 1 act "none" exp_bits 3 exp_base [0, 0] shift [0, 0] bias [0, 0] weights dense<1> : tensor<2x1x3x3xi8> : !po2.act<2x4x4, u8, 4> -> !po2.act<2x4x4, u8, 4>
  func.return
}
// CHECK: po2.conv2d 'c': weights have shape [2, 1, 3, 3], expected [2, 2, 3, 3] (out channels, in channels / groups, kernel h, kernel w)

// -----

func.func @f(%x: !po2.act<2x4x4, u8, 4>) {
  %y = po2.conv2d "c" %x kernel [3, 3] stride [1, 1] padding [1, 1, 1, 1] groups 1 act "none" exp_bits 3 exp_base [0, 0] shift [0, 0] bias [0, 0] weights dense<1> : tensor<2x2x3x3xi16> : !po2.act<2x4x4, u8, 4> -> !po2.act<2x4x4, u8, 4>
  func.return
}
// CHECK: po2.conv2d 'c': weight codes must be i8

// -----

func.func @f(%x: !po2.act<2x4x4, u8, 4>) {
  %y = po2.conv2d "c" %x kernel [3, 3] stride [1, 1] padding [1, 1, 1, 1] groups 1 act "none" exp_bits 7 exp_base [0, 0] shift [0, 0] bias [0, 0] weights dense<1> : tensor<2x2x3x3xi8> : !po2.act<2x4x4, u8, 4> -> !po2.act<2x4x4, u8, 4>
  func.return
}
// CHECK: po2.conv2d 'c': exp_bits=7 must be in 1..6

// -----

func.func @f(%x: !po2.act<2x4x4, u8, 4>) {
  %y = po2.conv2d "c" %x kernel [3, 3] stride [1, 1] padding [1, 1, 1, 1] groups 1 act "none" exp_bits 2 exp_base [0, 0] shift [0, 0] bias [0, 0] weights dense<8> : tensor<2x2x3x3xi8> : !po2.act<2x4x4, u8, 4> -> !po2.act<2x4x4, u8, 4>
  func.return
}
// CHECK: po2.conv2d 'c': weight code 8 at [0, 0, 0, 0] is outside the 2-bit exponent code range -4..4

// -----

func.func @f(%x: !po2.act<2x4x4, u8, 4>) {
  %y = po2.conv2d "c" %x kernel [3, 3] stride [1, 1] padding [1, 1, 1, 1] groups 1 act "none" exp_bits 3 exp_base [0] shift [0, 0] bias [0, 0] weights dense<1> : tensor<2x2x3x3xi8> : !po2.act<2x4x4, u8, 4> -> !po2.act<2x4x4, u8, 4>
  func.return
}
// CHECK: po2.conv2d 'c': exp_base has 1 values, expected one per output channel (2)

// -----

func.func @f(%x: !po2.act<2x4x4, u8, 4>) {
  %y = po2.conv2d "c" %x kernel [3, 3] stride [1, 1] padding [1, 1, 1, 1] groups 1 act "none" exp_bits 3 exp_base [0, 0] shift [0, 0] bias [0, 0, 0] weights dense<1> : tensor<2x2x3x3xi8> : !po2.act<2x4x4, u8, 4> -> !po2.act<2x4x4, u8, 4>
  func.return
}
// CHECK: po2.conv2d 'c': bias has 3 values, expected one per output channel (2)

// -----

func.func @f(%x: !po2.act<2x4x4, u8, 4>) {
  %y = po2.conv2d "c" %x kernel [3, 3] stride [1, 1] padding [1, 1, 1, 1] groups 1 act "none" exp_bits 3 exp_base [0, 0] shift [0, 1] bias [0, 0] weights dense<1> : tensor<2x2x3x3xi8> : !po2.act<2x4x4, u8, 4> -> !po2.act<2x4x4, u8, 4>
  func.return
}
// CHECK: po2.conv2d 'c': shift[1] = 1 but the formats require Fx - Fy - exp_base = 4 - 4 - 0 = 0

// -----

func.func @f(%x: tensor<2x4x4xi8>) {
  %y = po2.conv2d "c" %x kernel [3, 3] stride [1, 1] padding [1, 1, 1, 1] groups 1 act "none" exp_bits 3 exp_base [0, 0] shift [0, 0] bias [0, 0] weights dense<1> : tensor<2x2x3x3xi8> : tensor<2x4x4xi8> -> !po2.act<2x4x4, u8, 4>
  func.return
}
// CHECK: tensor<2x4x4xi8> should be of base attribute po2.act
