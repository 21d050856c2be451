// RUN: po2-opt %s --split-input-file --verify-diagnostics | filecheck %s
// One case per verifier rule of po2.maxpool2d, po2.avgpool2d, po2.leaky_relu, po2.clamp.

func.func @f(%x: !po2.act<4x8x9, u8, 5>) {
  %y = po2.maxpool2d "mp" %x kernel [3, 3] stride [2, 2] padding [0, 0, 0, 0] : !po2.act<4x8x9, u8, 5> -> !po2.act<4x4x4, u8, 5>
  func.return
}
// CHECK: po2.maxpool2d 'mp': result is [4, 4, 4] but a 3x3 window with stride 2x2 and padding [0, 0, 0, 0] on [4, 8, 9] gives [4, 3, 4]

// -----

func.func @f(%x: !po2.act<4x8x9, u8, 5>) {
  %y = po2.maxpool2d "mp" %x kernel [2, 2] stride [2, 2] padding [0, 0, 0, 0] : !po2.act<4x8x9, u8, 5> -> !po2.act<4x4x4, u8, 4>
  func.return
}
// CHECK: po2.maxpool2d 'mp': max pooling keeps the format, got u8 frac 5 -> u8 frac 4

// -----

func.func @f(%x: !po2.act<4x8x9, u8, 5>) {
  %y = po2.maxpool2d "mp" %x kernel [2, 2] stride [1, 1] padding [2, 0, 0, 0] : !po2.act<4x8x9, u8, 5> -> !po2.act<4x9x8, u8, 5>
  func.return
}
// CHECK: po2.maxpool2d 'mp': padding [2, 0, 0, 0] must be smaller than the kernel 2x2 (every window must hold an image pixel)

// -----

func.func @f(%x: !po2.act<3x7x9, s8, 4>) {
  %y = po2.avgpool2d "ap" %x kernel [3, 3] stride [1, 1] padding [1, 1, 1, 1] multiplier 1 shift 3 : !po2.act<3x7x9, s8, 4> -> !po2.act<3x7x9, s8, 4>
  func.return
}
// CHECK: po2.avgpool2d 'ap': multiplier/shift (1, 3) differ from the semantics' constants (116508, 20) for a window of 9 positions

// -----

func.func @f(%x: !po2.act<3x7x9, s8, 4>) {
  %y = po2.avgpool2d "ap" %x kernel [2, 2] stride [0, 1] padding [0, 0, 0, 0] multiplier 1 shift 2 : !po2.act<3x7x9, s8, 4> -> !po2.act<3x7x9, s8, 4>
  func.return
}
// CHECK: po2.avgpool2d 'ap': kernel and stride must be >= 1, padding >= 0

// -----

func.func @f(%x: !po2.act<5x2x3, s8, 4>) {
  %y = po2.leaky_relu "lr" %x slope_shift -1 : !po2.act<5x2x3, s8, 4> -> !po2.act<5x2x3, s8, 4>
  func.return
}
// CHECK: po2.leaky_relu 'lr': slope_shift -1 must be in 0..32 (negative slope 2^-slope_shift)

// -----

func.func @f(%x: !po2.act<5x2x3, s8, 4>) {
  %y = po2.leaky_relu "lr" %x slope_shift 2 : !po2.act<5x2x3, s8, 4> -> !po2.act<5x3x2, s8, 4>
  func.return
}
// CHECK: po2.leaky_relu 'lr': input shape [5, 2, 3] differs from result shape [5, 3, 2]

// -----

func.func @f(%x: !po2.act<5x2x3, s8, 4>) {
  %y = po2.clamp "ht" %x lo -200 hi 16 : !po2.act<5x2x3, s8, 4> -> !po2.act<5x2x3, s8, 4>
  func.return
}
// CHECK: po2.clamp 'ht': bounds [-200, 16] must satisfy -128 <= lo <= hi <= 127 (the result format s8 frac 4)

// -----

func.func @f(%x: !po2.act<5x2x3, s8, 4>) {
  %y = po2.clamp "ht" %x lo 16 hi 8 : !po2.act<5x2x3, s8, 4> -> !po2.act<5x2x3, s8, 4>
  func.return
}
// CHECK: po2.clamp 'ht': bounds [16, 8] must satisfy -128 <= lo <= hi <= 127 (the result format s8 frac 4)
