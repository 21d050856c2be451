// RUN: po2-opt %s --split-input-file --verify-diagnostics | filecheck %s

func.func @zero_dim(%a: !po2.act<0x4x4, u8, 0>)
// CHECK: activation shape [0, 4, 4] must be non-empty and positive

// -----

func.func @two_dims(%a: !po2.act<4x4, u8, 0>)
// CHECK: activation shape [4, 4] must be CxHxW or a vector N

// -----

func.func @too_wide(%a: !po2.act<4, s65, 0>)
// CHECK: activation width 65 must be in 1..64

// -----

func.func @zero_width(%a: !po2.act<4, u0, 0>)
// CHECK: activation width 0 must be in 1..64
