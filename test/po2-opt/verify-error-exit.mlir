// Without --verify-diagnostics, invalid IR is a located diagnostic and a non-zero exit.
// RUN: not po2-opt %s 2>&1 | filecheck %s

func.func @f(%x: !po2.act<2x4x4, u8, 4>) -> !po2.act<2x4x4, s8, 4> {
  %y = po2.requant "q" %x act "relu5" : !po2.act<2x4x4, u8, 4> -> !po2.act<2x4x4, s8, 4>
  func.return %y : !po2.act<2x4x4, s8, 4>
}
// CHECK: verify-error-exit.mlir:5:3
// CHECK: po2.requant 'q': activation 'relu5' is not one of none, relu, relu6
// CHECK-NOT: Traceback
