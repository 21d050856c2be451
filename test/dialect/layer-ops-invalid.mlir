// RUN: po2-opt %s --split-input-file --verify-diagnostics | filecheck %s
// One case per verifier rule of po2.requant, po2.residual_add, po2.avgpool, po2.flatten
// and po2.npu_linear.

func.func @f(%x: !po2.act<4x5x6, s8, 3>) {
  %y = po2.requant "q" %x act "tanh" : !po2.act<4x5x6, s8, 3> -> !po2.act<4x5x6, s8, 3>
  func.return
}
// CHECK: po2.requant 'q': activation 'tanh' is not one of none, relu, relu6

// -----

func.func @f(%x: !po2.act<4x5x6, s8, 3>) {
  %y = po2.requant "q" %x act "none" : !po2.act<4x5x6, s8, 3> -> !po2.act<4x6x5, s8, 3>
  func.return
}
// CHECK: po2.requant 'q': input shape [4, 5, 6] differs from result shape [4, 6, 5]

// -----

func.func @f(%a: !po2.act<4x5x6, s8, 3>, %b: !po2.act<4x5x6, s8, 3>) {
  %y = po2.residual_add "add" %a, %b act "relu7" : !po2.act<4x5x6, s8, 3>, !po2.act<4x5x6, s8, 3> -> !po2.act<4x5x6, s8, 3>
  func.return
}
// CHECK: po2.residual_add 'add': activation 'relu7' is not one of none, relu, relu6

// -----

func.func @f(%a: !po2.act<4x5x6, s8, 3>, %b: !po2.act<4x5x5, s8, 3>) {
  %y = po2.residual_add "add" %a, %b act "none" : !po2.act<4x5x6, s8, 3>, !po2.act<4x5x5, s8, 3> -> !po2.act<4x5x6, s8, 3>
  func.return
}
// CHECK: po2.residual_add 'add': shapes differ: lhs [4, 5, 6], rhs [4, 5, 5], result [4, 5, 6]

// -----

func.func @f(%x: !po2.act<4x5x6, s8, 3>) {
  %y = po2.avgpool "pool" %x multiplier 69905 shift 21 : !po2.act<4x5x6, s8, 3> -> !po2.act<4x1x2, s8, 3>
  func.return
}
// CHECK: po2.avgpool 'pool': global pooling maps CxHxW to Cx1x1, got [4, 5, 6] -> [4, 1, 2]

// -----

func.func @f(%x: !po2.act<4x5x6, s8, 3>) {
  %y = po2.avgpool "pool" %x multiplier 1 shift 5 : !po2.act<4x5x6, s8, 3> -> !po2.act<4x1x1, s8, 3>
  func.return
}
// CHECK: po2.avgpool 'pool': multiplier/shift (1, 5) differ from the semantics' constants (69905, 21) for 30 positions

// -----

func.func @f(%x: !po2.act<4x5x6, s8, 3>) {
  %y = po2.flatten "flat" %x : !po2.act<4x5x6, s8, 3> -> !po2.act<100, s8, 3>
  func.return
}
// CHECK: po2.flatten 'flat': flattening !po2.act<4x5x6, s8, 3> must give a vector of 120 elements in the same format, got !po2.act<100, s8, 3>

// -----

func.func @f(%x: !po2.act<4x5x6, s8, 3>) {
  %y = po2.flatten "flat" %x : !po2.act<4x5x6, s8, 3> -> !po2.act<120, s8, 2>
  func.return
}
// CHECK: po2.flatten 'flat': flattening !po2.act<4x5x6, s8, 3> must give a vector of 120 elements in the same format, got !po2.act<120, s8, 2>
