// RUN: po2-opt %s --disable-verify -p po2-infer-widths | po2-opt | filecheck %s
// Interval analysis over the datapath: every scalar gets the narrowest si/ui type holding
// its range. Types that are too wide are narrowed; types that could overflow (this input
// does not verify: see --disable-verify) are widened. The output verifies (second po2-opt).

// CHECK-LABEL: func.func @widths
// CHECK:         ^bb0(%[[A:.*]]: ui4, %[[B:.*]]: ui4):
// A constant is exact: 6 needs ui3.
// CHECK-NEXT:      %[[C:.*]] = po2.const 6 : ui3
// 15 + 15 = 30: the hand-written si4 could overflow; ui5 holds it.
// CHECK-NEXT:      %[[ADD:.*]] = po2.add %[[A]], %[[B]] : (ui4, ui4) -> ui5
// [0, 15] << 3 = [0, 120]: ui7, not the si32 written.
// CHECK-NEXT:      %[[SHL:.*]] = po2.shl %[[A]], 3 : ui4 -> ui7
// [0, 31] - [0, 127] = [-127, 31]: si8.
// CHECK-NEXT:      %[[SUB:.*]] = po2.sub %[[ADD]], %[[SHL]] : (ui5, ui7) -> si8
// -[-128, 127] = [-127, 128]: si9 (the range rule reads the operand's type).
// CHECK-NEXT:      %[[NEG:.*]] = po2.neg %[[SUB]] : si8 -> si9
// [-256, 255] + [0, 31] + 6 = [-250, 292]: si10.
// CHECK-NEXT:      %[[SUM:.*]] = po2.sum %[[NEG]], %[[ADD]], %[[C]] : (si9, ui5, ui3) -> si10
// A rescale is bounded by its clamp: relu6 at frac 2 is [0, 24], ui5.
// CHECK-NEXT:      %[[R:.*]] = po2.rescale %[[SUM]], 1 clamp [0, 24] : si10 -> ui5
// CHECK-NEXT:      po2.yield %[[R]] : ui5
func.func @widths(%x: !po2.act<2x1x1, u4, 2>) -> !po2.act<1x1x1, u8, 2> {
  %y = po2.unrolled_conv2d "c" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "relu6" : !po2.act<2x1x1, u4, 2> -> !po2.act<1x1x1, u8, 2> {
  ^bb0(%a: ui4, %b: ui4):
    %c = po2.const 6 : si16
    %add = po2.add %a, %b : (ui4, ui4) -> si4
    %shl = po2.shl %a, 3 : ui4 -> si32
    %sub = po2.sub %add, %shl : (si4, si32) -> si4
    %neg = po2.neg %sub : si4 -> si4
    %sum = po2.sum %neg, %add, %c : (si4, si4, si16) -> si4
    %r = po2.rescale %sum, 1 clamp [0, 24] : si4 -> ui8
    po2.yield %r : ui8
  }
  func.return %y : !po2.act<1x1x1, u8, 2>
}
