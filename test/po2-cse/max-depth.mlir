// RUN: po2-opt %s -p po2-unroll,po2-canonicalize,po2-cse | filecheck %s --check-prefix=DEEP
// RUN: po2-opt %s -p 'po2-unroll,po2-canonicalize,po2-cse{max_depth=1}' | filecheck %s --check-prefix=FLAT
// RUN: not po2-opt %s -p 'po2-unroll,po2-cse{max_depth=0}' 2>&1 | filecheck %s --check-prefix=BAD
// Three channels share x0 + 2*x1 + 4*x2. By default (max_depth 2) the whole three-term
// sum is shared, as two nested adders; with max_depth=1 only x0 + 2*x1 is (one adder
// deep), and each channel adds 4*x2 itself.

// DEEP:        ^bb0(%[[X0:.*]]: ui8, %[[X1:.*]]: ui8, %[[X2:.*]]: ui8, %[[X3:.*]]: ui8):
// DEEP-NEXT:     %[[S1:.*]] = po2.shl %[[X1]], 1
// DEEP-NEXT:     %[[T:.*]] = po2.add %[[X0]], %[[S1]]
// DEEP-NEXT:     %[[S2:.*]] = po2.shl %[[X2]], 2
// DEEP-NEXT:     %[[U:.*]] = po2.add %[[T]], %[[S2]]
// DEEP-NEXT:     po2.rescale %[[U]], 1
// DEEP-NEXT:     %[[U1:.*]] = po2.shl %[[U]], 1
// DEEP-NEXT:     po2.sum %[[X3]], %[[U1]]
// DEEP:          po2.sum %[[X3]], %[[U]]
// DEEP-NEXT:     po2.neg

// FLAT:        ^bb0(%[[X0:.*]]: ui8, %[[X1:.*]]: ui8, %[[X2:.*]]: ui8, %[[X3:.*]]: ui8):
// FLAT-NEXT:     %[[S1:.*]] = po2.shl %[[X1]], 1
// FLAT-NEXT:     %[[T:.*]] = po2.add %[[X0]], %[[S1]]
// FLAT-NEXT:     %[[S2:.*]] = po2.shl %[[X2]], 2
// FLAT-NEXT:     po2.sum %[[S2]], %[[T]]
// FLAT-NOT:      po2.add

// BAD: po2-cse: max_depth must be >= 1, got 0
func.func @deep(%x: !po2.act<4x1x1, u8, 4>) -> !po2.act<3x1x1, s8, 3> {
  %y = po2.conv2d "pw" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" exp_bits 3 exp_base [0, 0, 0] shift [1, 1, 1] bias [0, 0, 0] weights dense<[[[[1]], [[2]], [[3]], [[0]]], [[[2]], [[3]], [[4]], [[1]]], [[[-1]], [[-2]], [[-3]], [[-1]]]]> : tensor<3x4x1x1xi8> : !po2.act<4x1x1, u8, 4> -> !po2.act<3x1x1, s8, 3>
  func.return %y : !po2.act<3x1x1, s8, 3>
}
