// A syntax error is reported with its file, line and column, and po2-opt fails (no traceback).
// RUN: not po2-opt %s 2>&1 | filecheck %s

func.func @f(%x: !po2.act<2x4x4, u8, 4>) -> !po2.act<2x4x4, u8, 4> {
  %y = po2.requant "q" %x act "none" : !po2.act<2x4x4, u8, 4> !po2.act<2x4x4, u8, 4>
  func.return %y : !po2.act<2x4x4, u8, 4>
}
// CHECK: parse-error.mlir:5:63
// CHECK: Expected '->'
// CHECK-NOT: Traceback
