// RUN: po2-opt %s | po2-opt | filecheck %s
// The unrolled level: po2.unrolled_conv2d and its scalar ops, on exact-width si/ui values.

// CHECK-LABEL: func.func @unrolled
// CHECK-NEXT:    %{{.*}} = po2.unrolled_conv2d "c" %{{.*}} kernel [1, 2] stride [1, 1] padding [0, 0, 0, 1] groups 1 act "relu" : !po2.act<1x2x2, u8, 4> -> !po2.act<2x2x2, u8, 3> {
// CHECK-NEXT:    ^bb0(%[[A:.*]]: ui8, %[[B:.*]]: ui8):
// CHECK-NEXT:      %[[C:.*]] = po2.const -37 : si7
// CHECK-NEXT:      %[[S:.*]] = po2.shl %[[B]], 3 : ui8 -> ui11
// CHECK-NEXT:      %[[ADD:.*]] = po2.add %[[A]], %[[S]] : (ui8, ui11) -> ui12
// CHECK-NEXT:      %[[SUB:.*]] = po2.sub %[[A]], %[[S]] : (ui8, ui11) -> si12
// CHECK-NEXT:      %[[NEG:.*]] = po2.neg %[[SUB]] : si12 -> si13
// CHECK-NEXT:      %[[SUM:.*]] = po2.sum %[[ADD]], %[[NEG]], %[[C]] : (ui12, si13, si7) -> si15
// CHECK-NEXT:      %[[R0:.*]] = po2.rescale %[[SUM]], 2 clamp [0, 255] : si15 -> ui8
// CHECK-NEXT:      %[[R1:.*]] = po2.rescale %[[A]], -1 clamp [0, 96] : ui8 -> ui7
// CHECK-NEXT:      po2.yield %[[R0]], %[[R1]] : ui8, ui7
// CHECK-NEXT:    }
func.func @unrolled(%x: !po2.act<1x2x2, u8, 4>) -> !po2.act<2x2x2, u8, 3> {
  %y = po2.unrolled_conv2d "c" %x kernel [1, 2] stride [1, 1] padding [0, 0, 0, 1] groups 1 act "relu" : !po2.act<1x2x2, u8, 4> -> !po2.act<2x2x2, u8, 3> {
  ^bb0(%a: ui8, %b: ui8):
    %c = po2.const -37 : si7
    %s = po2.shl %b, 3 : ui8 -> ui11
    %add = po2.add %a, %s : (ui8, ui11) -> ui12
    %sub = po2.sub %a, %s : (ui8, ui11) -> si12
    %neg = po2.neg %sub : si12 -> si13
    %sum = po2.sum %add, %neg, %c : (ui12, si13, si7) -> si15
    %r0 = po2.rescale %sum, 2 clamp [0, 255] : si15 -> ui8
    %r1 = po2.rescale %a, -1 clamp [0, 96] : ui8 -> ui7
    po2.yield %r0, %r1 : ui8, ui7
  }
  func.return %y : !po2.act<2x2x2, u8, 3>
}

// Types wider than needed are legal (po2-infer-widths narrows them).
// CHECK-LABEL: func.func @wide
// CHECK:         po2.sum %{{.*}} : ui8 -> si32
// CHECK:         po2.rescale %{{.*}}, 0 clamp [0, 15] : si32 -> ui8
func.func @wide(%x: !po2.act<1x1x1, u8, 0>) -> !po2.act<1x1x1, u8, 0> {
  %y = po2.unrolled_conv2d "w" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<1x1x1, u8, 0> -> !po2.act<1x1x1, u8, 0> {
  ^bb0(%a: ui8):
    %s = po2.sum %a : ui8 -> si32
    %r = po2.rescale %s, 0 clamp [0, 15] : si32 -> ui8
    po2.yield %r : ui8
  }
  func.return %y : !po2.act<1x1x1, u8, 0>
}
