// An unknown pass name fails and lists the passes that exist.
// RUN: not po2-opt %s -p po2-unrol 2>&1 | filecheck %s

func.func @f()
// CHECK: po2-opt: Unrecognized passes: ['po2-unrol']. Available passes:
// CHECK-SAME: po2-canonicalize
// CHECK-SAME: po2-infer-widths
// CHECK-SAME: po2-unroll
