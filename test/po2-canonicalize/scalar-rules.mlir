// RUN: po2-opt %s -p po2-canonicalize --split-input-file | filecheck %s
// One function per rule. Rebuilt ops keep their old result type (po2-infer-widths narrows).

// Shift by 0 is the value itself.
// CHECK-LABEL: func.func @shl_zero
// CHECK:         ^bb0(%[[A:.*]]: ui8):
// CHECK-NEXT:      %{{.*}} = po2.rescale %[[A]], 0
func.func @shl_zero(%x: !po2.act<1x1x1, u8, 0>) -> !po2.act<1x1x1, u8, 0> {
  %y = po2.unrolled_conv2d "c" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<1x1x1, u8, 0> -> !po2.act<1x1x1, u8, 0> {
  ^bb0(%a: ui8):
    %s = po2.shl %a, 0 : ui8 -> ui8
    %r = po2.rescale %s, 0 clamp [0, 255] : ui8 -> ui8
    po2.yield %r : ui8
  }
  func.return %y : !po2.act<1x1x1, u8, 0>
}

// -----

// A one-operand sum is the operand.
// CHECK-LABEL: func.func @single_operand_sum
// CHECK:         ^bb0(%[[A:.*]]: ui8):
// CHECK-NEXT:      %{{.*}} = po2.rescale %[[A]], 0 clamp [0, 255] : ui8 -> ui8
func.func @single_operand_sum(%x: !po2.act<1x1x1, u8, 0>) -> !po2.act<1x1x1, u8, 0> {
  %y = po2.unrolled_conv2d "c" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<1x1x1, u8, 0> -> !po2.act<1x1x1, u8, 0> {
  ^bb0(%a: ui8):
    %s = po2.sum %a : ui8 -> si32
    %r = po2.rescale %s, 0 clamp [0, 255] : si32 -> ui8
    po2.yield %r : ui8
  }
  func.return %y : !po2.act<1x1x1, u8, 0>
}

// -----

// Constants in a sum fold into one, placed last; a zero total disappears.
// CHECK-LABEL: func.func @sum_constants
// CHECK:         ^bb0(%[[A:.*]]: ui8, %[[B:.*]]: ui8):
// CHECK-NEXT:      %[[C:.*]] = po2.const 2 : ui2
// CHECK-NEXT:      %[[S:.*]] = po2.sum %[[A]], %[[B]], %[[C]] : (ui8, ui8, ui2) -> si12
// CHECK-NEXT:      %[[T:.*]] = po2.sum %[[A]], %[[B]] : (ui8, ui8) -> ui10
// CHECK-NEXT:      %[[K:.*]] = po2.const 0 : ui1
// CHECK-NEXT:      po2.rescale %[[S]]
// CHECK-NEXT:      po2.rescale %[[T]]
// CHECK-NEXT:      po2.rescale %[[K]]
func.func @sum_constants(%x: !po2.act<2x1x1, u8, 0>) -> !po2.act<3x1x1, u8, 0> {
  %y = po2.unrolled_conv2d "c" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<2x1x1, u8, 0> -> !po2.act<3x1x1, u8, 0> {
  ^bb0(%a: ui8, %b: ui8):
    %c5 = po2.const 5 : ui3
    %m3 = po2.const -3 : si3
    %m5 = po2.const -5 : si4
    %s = po2.sum %c5, %a, %m3, %b : (ui3, ui8, si3, ui8) -> si12
    %t = po2.sum %a, %c5, %b, %m5 : (ui8, ui3, ui8, si4) -> ui10
    %k = po2.sum %c5, %m5 : (ui3, si4) -> si5
    %r0 = po2.rescale %s, 0 clamp [0, 255] : si12 -> ui8
    %r1 = po2.rescale %t, 0 clamp [0, 255] : ui10 -> ui8
    %r2 = po2.rescale %k, 0 clamp [0, 255] : si5 -> ui8
    po2.yield %r0, %r1, %r2 : ui8, ui8, ui8
  }
  func.return %y : !po2.act<3x1x1, u8, 0>
}

// -----

// x + 0, 0 + x and x - 0 are x; 0 - x is neg x.
// CHECK-LABEL: func.func @add_sub_zero
// CHECK:         ^bb0(%[[A:.*]]: ui8, %[[B:.*]]: ui8):
// CHECK-NEXT:      %[[N:.*]] = po2.neg %[[B]] : ui8 -> si9
// CHECK-NEXT:      po2.rescale %[[A]], 0
// CHECK-NEXT:      po2.rescale %[[B]], 0
// CHECK-NEXT:      po2.rescale %[[A]], 1
// CHECK-NEXT:      po2.rescale %[[N]], 0
func.func @add_sub_zero(%x: !po2.act<2x1x1, u8, 0>) -> !po2.act<4x1x1, s8, 0> {
  %y = po2.unrolled_conv2d "c" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<2x1x1, u8, 0> -> !po2.act<4x1x1, s8, 0> {
  ^bb0(%a: ui8, %b: ui8):
    %z = po2.const 0 : ui1
    %p = po2.add %a, %z : (ui8, ui1) -> ui9
    %q = po2.add %z, %b : (ui1, ui8) -> ui9
    %s = po2.sub %a, %z : (ui8, ui1) -> si10
    %n = po2.sub %z, %b : (ui1, ui8) -> si10
    %r0 = po2.rescale %p, 0 clamp [-128, 127] : ui9 -> si8
    %r1 = po2.rescale %q, 0 clamp [-128, 127] : ui9 -> si8
    %r2 = po2.rescale %s, 1 clamp [-128, 127] : si10 -> si8
    %r3 = po2.rescale %n, 0 clamp [-128, 127] : si10 -> si8
    po2.yield %r0, %r1, %r2, %r3 : si8, si8, si8, si8
  }
  func.return %y : !po2.act<4x1x1, s8, 0>
}

// -----

// neg (neg x) is x.
// CHECK-LABEL: func.func @neg_neg
// CHECK:         ^bb0(%[[A:.*]]: si8):
// CHECK-NEXT:      %{{.*}} = po2.rescale %[[A]], 0 clamp [-128, 127] : si8 -> si8
func.func @neg_neg(%x: !po2.act<1x1x1, s8, 0>) -> !po2.act<1x1x1, s8, 0> {
  %y = po2.unrolled_conv2d "c" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<1x1x1, s8, 0> -> !po2.act<1x1x1, s8, 0> {
  ^bb0(%a: si8):
    %n = po2.neg %a : si8 -> si9
    %m = po2.neg %n : si9 -> si10
    %r = po2.rescale %m, 0 clamp [-128, 127] : si10 -> si8
    po2.yield %r : si8
  }
  func.return %y : !po2.act<1x1x1, s8, 0>
}

// -----

// A single-use sum inside a sum is spliced in; a shared one stays.
// CHECK-LABEL: func.func @nested_sum
// CHECK:         ^bb0(%[[A:.*]]: ui8, %[[B:.*]]: ui8, %[[C:.*]]: ui8):
// CHECK-NEXT:      %[[SH:.*]] = po2.sum %[[B]], %[[C]] : (ui8, ui8) -> ui9
// CHECK-NEXT:      %[[T:.*]] = po2.sum %[[A]], %[[B]], %[[C]], %[[SH]] : (ui8, ui8, ui8, ui9) -> ui11
// CHECK-NEXT:      %[[U:.*]] = po2.sum %[[SH]], %[[A]] : (ui9, ui8) -> ui10
func.func @nested_sum(%x: !po2.act<3x1x1, u8, 0>) -> !po2.act<2x1x1, u8, 0> {
  %y = po2.unrolled_conv2d "c" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<3x1x1, u8, 0> -> !po2.act<2x1x1, u8, 0> {
  ^bb0(%a: ui8, %b: ui8, %c: ui8):
    %inner = po2.sum %a, %b : (ui8, ui8) -> ui9
    %shared = po2.sum %b, %c : (ui8, ui8) -> ui9
    %t = po2.sum %inner, %c, %shared : (ui9, ui8, ui9) -> ui11
    %u = po2.sum %shared, %a : (ui9, ui8) -> ui10
    %r0 = po2.rescale %t, 3 clamp [0, 255] : ui11 -> ui8
    %r1 = po2.rescale %u, 2 clamp [0, 255] : ui10 -> ui8
    po2.yield %r0, %r1 : ui8, ui8
  }
  func.return %y : !po2.act<2x1x1, u8, 0>
}

// -----

// An add of single-use sums is one sum (keeping the add's type).
// CHECK-LABEL: func.func @add_of_sums
// CHECK:         ^bb0(%[[A:.*]]: ui8, %[[B:.*]]: ui8, %[[C:.*]]: ui8):
// CHECK-NEXT:      %[[S:.*]] = po2.sum %[[A]], %[[B]], %[[C]] : (ui8, ui8, ui8) -> ui11
// CHECK-NEXT:      po2.rescale %[[S]], 2
func.func @add_of_sums(%x: !po2.act<3x1x1, u8, 0>) -> !po2.act<1x1x1, u8, 0> {
  %y = po2.unrolled_conv2d "c" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<3x1x1, u8, 0> -> !po2.act<1x1x1, u8, 0> {
  ^bb0(%a: ui8, %b: ui8, %c: ui8):
    %s = po2.sum %a, %b : (ui8, ui8) -> ui9
    %t = po2.add %s, %c : (ui9, ui8) -> ui11
    %r = po2.rescale %t, 2 clamp [0, 255] : ui11 -> ui8
    po2.yield %r : ui8
  }
  func.return %y : !po2.act<1x1x1, u8, 0>
}

// -----

// Unused scalar ops are erased.
// CHECK-LABEL: func.func @dead
// CHECK:         ^bb0(%[[A:.*]]: ui8):
// CHECK-NEXT:      %{{.*}} = po2.rescale %[[A]]
// CHECK-NEXT:      po2.yield
func.func @dead(%x: !po2.act<1x1x1, u8, 0>) -> !po2.act<1x1x1, u8, 0> {
  %y = po2.unrolled_conv2d "c" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<1x1x1, u8, 0> -> !po2.act<1x1x1, u8, 0> {
  ^bb0(%a: ui8):
    %s = po2.shl %a, 4 : ui8 -> ui12
    %c = po2.const 3 : ui2
    %t = po2.sum %s, %c : (ui12, ui2) -> ui13
    %r = po2.rescale %a, 0 clamp [0, 255] : ui8 -> ui8
    po2.yield %r : ui8
  }
  func.return %y : !po2.act<1x1x1, u8, 0>
}
