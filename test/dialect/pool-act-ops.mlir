// RUN: po2-opt %s | po2-opt | filecheck %s
// Windowed pooling (po2.maxpool2d, po2.avgpool2d) and the activations po2.leaky_relu and
// po2.clamp, as the frontend emits them (issue 13). ceil_mode is extra bottom/right padding.

// CHECK-LABEL: func.func @maxpool2d
// CHECK-NEXT:    %{{.*}} = po2.maxpool2d "pool1" %{{.*}} kernel [3, 3] stride [2, 2] padding [0, 0, 1, 0] : !po2.act<4x8x9, u8, 5> -> !po2.act<4x4x4, u8, 5>
func.func @maxpool2d(%x: !po2.act<4x8x9, u8, 5>) -> !po2.act<4x4x4, u8, 5> {
  %y = po2.maxpool2d "pool1" %x kernel [3, 3] stride [2, 2] padding [0, 0, 1, 0] : !po2.act<4x8x9, u8, 5> -> !po2.act<4x4x4, u8, 5>
  func.return %y : !po2.act<4x4x4, u8, 5>
}

// CHECK-LABEL: func.func @avgpool2d
// CHECK-NEXT:    %{{.*}} = po2.avgpool2d "avg2" %{{.*}} kernel [2, 2] stride [2, 2] padding [0, 0, 0, 0] multiplier 1 shift 2 : !po2.act<3x7x9, s8, 4> -> !po2.act<3x3x4, s8, 5>
// CHECK-NEXT:    %{{.*}} = po2.avgpool2d "avg3" %{{.*}} kernel [3, 3] stride [1, 1] padding [1, 1, 1, 1] multiplier 116508 shift 20 : !po2.act<3x7x9, s8, 4> -> !po2.act<3x7x9, s8, 4>
func.func @avgpool2d(%x: !po2.act<3x7x9, s8, 4>) -> !po2.act<3x3x4, s8, 5> {
  %y = po2.avgpool2d "avg2" %x kernel [2, 2] stride [2, 2] padding [0, 0, 0, 0] multiplier 1 shift 2 : !po2.act<3x7x9, s8, 4> -> !po2.act<3x3x4, s8, 5>
  %z = po2.avgpool2d "avg3" %x kernel [3, 3] stride [1, 1] padding [1, 1, 1, 1] multiplier 116508 shift 20 : !po2.act<3x7x9, s8, 4> -> !po2.act<3x7x9, s8, 4>
  func.return %y : !po2.act<3x3x4, s8, 5>
}

// CHECK-LABEL: func.func @activations
// CHECK-NEXT:    %{{.*}} = po2.leaky_relu "lrelu" %{{.*}} slope_shift 3 : !po2.act<5x2x3, s8, 4> -> !po2.act<5x2x3, s8, 5>
// CHECK-NEXT:    %{{.*}} = po2.clamp "htanh" %{{.*}} lo -8 hi 16 : !po2.act<5x2x3, s8, 5> -> !po2.act<5x2x3, s8, 5>
func.func @activations(%x: !po2.act<5x2x3, s8, 4>) -> !po2.act<5x2x3, s8, 5> {
  %y = po2.leaky_relu "lrelu" %x slope_shift 3 : !po2.act<5x2x3, s8, 4> -> !po2.act<5x2x3, s8, 5>
  %z = po2.clamp "htanh" %y lo -8 hi 16 : !po2.act<5x2x3, s8, 5> -> !po2.act<5x2x3, s8, 5>
  func.return %z : !po2.act<5x2x3, s8, 5>
}
