// Without the pass, IR that could overflow is rejected; with it, it is repaired.
// RUN: not po2-opt %s 2>&1 | filecheck %s --check-prefix=REJECT
// RUN: po2-opt %s --disable-verify -p po2-infer-widths | po2-opt | filecheck %s --check-prefix=FIXED

// REJECT: po2.add: result type si4 cannot hold the range [0, 30] of its operands (needs at least ui5): it could overflow
// FIXED: po2.add %{{.*}}, %{{.*}} : (ui4, ui4) -> ui5
func.func @f(%x: !po2.act<2x1x1, u4, 0>) -> !po2.act<1x1x1, u8, 0> {
  %y = po2.unrolled_conv2d "c" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<2x1x1, u4, 0> -> !po2.act<1x1x1, u8, 0> {
  ^bb0(%a: ui4, %b: ui4):
    %s = po2.add %a, %b : (ui4, ui4) -> si4
    %r = po2.rescale %s, 0 clamp [0, 255] : si4 -> ui8
    po2.yield %r : ui8
  }
  func.return %y : !po2.act<1x1x1, u8, 0>
}
