// A malformed element format is a parse error: po2-opt names the location and fails.
// RUN: not po2-opt %s 2>&1 | filecheck %s

func.func @bad(%a: !po2.act<4x4x4, x8, 0>)
// CHECK: act-type-parse-error.mlir:4:38
// CHECK: expected an element format such as u8 or s8, got 'x8'
