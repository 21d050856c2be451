// RUN: po2-opt %s | po2-opt | filecheck %s
// The layer-level ops other than po2.conv2d (see conv2d.mlir), as the frontend emits them.

// CHECK-LABEL: func.func @requant
// CHECK-NEXT:    %{{.*}} = po2.requant "q" %{{.*}} act "relu" : !po2.act<4x5x6, s8, 3> -> !po2.act<4x5x6, s6, 2>
func.func @requant(%x: !po2.act<4x5x6, s8, 3>) -> !po2.act<4x5x6, s6, 2> {
  %y = po2.requant "q" %x act "relu" : !po2.act<4x5x6, s8, 3> -> !po2.act<4x5x6, s6, 2>
  func.return %y : !po2.act<4x5x6, s6, 2>
}

// CHECK-LABEL: func.func @residual_add
// CHECK-NEXT:    %{{.*}} = po2.residual_add "block1.add" %{{.*}}, %{{.*}} act "none" : !po2.act<4x5x6, s8, 3>, !po2.act<4x5x6, s6, 2> -> !po2.act<4x5x6, s8, 3>
func.func @residual_add(%a: !po2.act<4x5x6, s8, 3>, %b: !po2.act<4x5x6, s6, 2>) -> !po2.act<4x5x6, s8, 3> {
  %y = po2.residual_add "block1.add" %a, %b act "none" : !po2.act<4x5x6, s8, 3>, !po2.act<4x5x6, s6, 2> -> !po2.act<4x5x6, s8, 3>
  func.return %y : !po2.act<4x5x6, s8, 3>
}

// CHECK-LABEL: func.func @avgpool
// CHECK-NEXT:    %{{.*}} = po2.avgpool "pool" %{{.*}} multiplier 69905 shift 21 : !po2.act<4x5x6, s6, 2> -> !po2.act<4x1x1, u7, 1>
// CHECK:         %{{.*}} = po2.avgpool "pool16" %{{.*}} multiplier 1 shift 4 : !po2.act<4x4x4, u8, 2> -> !po2.act<4x1x1, u8, 2>
func.func @avgpool(%x: !po2.act<4x5x6, s6, 2>, %z: !po2.act<4x4x4, u8, 2>) -> !po2.act<4x1x1, u7, 1> {
  %y = po2.avgpool "pool" %x multiplier 69905 shift 21 : !po2.act<4x5x6, s6, 2> -> !po2.act<4x1x1, u7, 1>
  %w = po2.avgpool "pool16" %z multiplier 1 shift 4 : !po2.act<4x4x4, u8, 2> -> !po2.act<4x1x1, u8, 2>
  func.return %y : !po2.act<4x1x1, u7, 1>
}

// CHECK-LABEL: func.func @flatten
// CHECK-NEXT:    %{{.*}} = po2.flatten "flat" %{{.*}} : !po2.act<4x1x2, u7, 1> -> !po2.act<8, u7, 1>
func.func @flatten(%x: !po2.act<4x1x2, u7, 1>) -> !po2.act<8, u7, 1> {
  %y = po2.flatten "flat" %x : !po2.act<4x1x2, u7, 1> -> !po2.act<8, u7, 1>
  func.return %y : !po2.act<8, u7, 1>
}

// CHECK-LABEL: func.func @npu_linear
// CHECK-NEXT:    %{{.*}} = po2.npu_linear "fc" %{{.*}} slot "classifier" weight_bits 8 weight_frac 6 bias_bits 24 bias [797, -403] weights dense<{{\[}}[43, -42, 18, -90], [92, -13, 101, 75]]> : tensor<2x4xi32> : !po2.act<4, u7, 1> -> !po2.act<2, s25, 7>
func.func @npu_linear(%x: !po2.act<4, u7, 1>) -> !po2.act<2, s25, 7> {
  %y = po2.npu_linear "fc" %x slot "classifier" weight_bits 8 weight_frac 6 bias_bits 24 bias [797, -403] weights dense<[[43, -42, 18, -90], [92, -13, 101, 75]]> : tensor<2x4xi32> : !po2.act<4, u7, 1> -> !po2.act<2, s25, 7>
  func.return %y : !po2.act<2, s25, 7>
}
