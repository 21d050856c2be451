// RUN: po2-opt %s --split-input-file --verify-diagnostics | filecheck %s
// One case per verifier rule of the scalar ops: si/ui operands only, and a result type
// that holds every value the op can produce (nothing may wrap).

func.func @f(%x: !po2.act<2x3x3, u8, 4>) {
  %y = po2.unrolled_conv2d "u" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<2x3x3, u8, 4> -> !po2.act<1x3x3, u8, 4> {
  ^bb0(%a: ui8, %b: ui8):
    %c = po2.const 300 : ui8
    %r = po2.rescale %a, 0 clamp [0, 255] : ui8 -> ui8
    po2.yield %r : ui8
  }
  func.return
}
// CHECK: po2.const: result type ui8 cannot hold the range [300, 300] of its operands (needs at least ui9): it could overflow

// -----

func.func @f(%x: !po2.act<2x3x3, u8, 4>) {
  %y = po2.unrolled_conv2d "u" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<2x3x3, u8, 4> -> !po2.act<1x3x3, u8, 4> {
  ^bb0(%a: ui8, %b: ui8):
    %c = po2.const -1 : ui8
    %r = po2.rescale %a, 0 clamp [0, 255] : ui8 -> ui8
    po2.yield %r : ui8
  }
  func.return
}
// CHECK: po2.const: result type ui8 cannot hold the range [-1, -1] of its operands (needs at least si1): it could overflow

// -----

func.func @f(%x: !po2.act<2x3x3, u8, 4>) {
  %y = po2.unrolled_conv2d "u" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<2x3x3, u8, 4> -> !po2.act<1x3x3, u8, 4> {
  ^bb0(%a: ui8, %b: ui8):
    %c = po2.const 1 : i8
    %r = po2.rescale %a, 0 clamp [0, 255] : ui8 -> ui8
    po2.yield %r : ui8
  }
  func.return
}
// CHECK: po2.const: result must be a signed or unsigned integer (si/ui), got i8

// -----

func.func @f(%x: !po2.act<2x3x3, u8, 4>) {
  %y = po2.unrolled_conv2d "u" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<2x3x3, u8, 4> -> !po2.act<1x3x3, u8, 4> {
  ^bb0(%a: ui8, %b: ui8):
    %s = po2.shl %a, 2 : ui8 -> ui9
    %r = po2.rescale %a, 0 clamp [0, 255] : ui8 -> ui8
    po2.yield %r : ui8
  }
  func.return
}
// CHECK: po2.shl: result type ui9 cannot hold the range [0, 1020] of its operands (needs at least ui10): it could overflow

// -----

func.func @f(%x: !po2.act<2x3x3, u8, 4>) {
  %y = po2.unrolled_conv2d "u" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<2x3x3, u8, 4> -> !po2.act<1x3x3, u8, 4> {
  ^bb0(%a: ui8, %b: ui8):
    %s = po2.shl %a, -1 : ui8 -> ui9
    %r = po2.rescale %a, 0 clamp [0, 255] : ui8 -> ui8
    po2.yield %r : ui8
  }
  func.return
}
// CHECK: po2.shl: shift amount -1 must be >= 0

// -----

func.func @f(%x: !po2.act<2x3x3, u8, 4>) {
  %y = po2.unrolled_conv2d "u" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<2x3x3, u8, 4> -> !po2.act<1x3x3, u8, 4> {
  ^bb0(%a: ui8, %b: ui8):
    %s = po2.add %a, %b : (ui8, ui8) -> ui8
    %r = po2.rescale %a, 0 clamp [0, 255] : ui8 -> ui8
    po2.yield %r : ui8
  }
  func.return
}
// CHECK: po2.add: result type ui8 cannot hold the range [0, 510] of its operands (needs at least ui9): it could overflow

// -----

func.func @f(%x: !po2.act<2x3x3, u8, 4>) {
  %y = po2.unrolled_conv2d "u" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<2x3x3, u8, 4> -> !po2.act<1x3x3, u8, 4> {
  ^bb0(%a: ui8, %b: ui8):
    %s = po2.sub %a, %b : (ui8, ui8) -> ui9
    %r = po2.rescale %a, 0 clamp [0, 255] : ui8 -> ui8
    po2.yield %r : ui8
  }
  func.return
}
// CHECK: po2.sub: result type ui9 cannot hold the range [-255, 255] of its operands (needs at least si9): it could overflow

// -----

func.func @f(%x: !po2.act<2x3x3, u8, 4>) {
  %y = po2.unrolled_conv2d "u" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<2x3x3, u8, 4> -> !po2.act<1x3x3, u8, 4> {
  ^bb0(%a: ui8, %b: ui8):
    %s = po2.neg %a : ui8 -> si8
    %r = po2.rescale %a, 0 clamp [0, 255] : ui8 -> ui8
    po2.yield %r : ui8
  }
  func.return
}
// CHECK: po2.neg: result type si8 cannot hold the range [-255, 0] of its operands (needs at least si9): it could overflow

// -----

func.func @f(%x: !po2.act<2x3x3, u8, 4>) {
  %y = po2.unrolled_conv2d "u" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<2x3x3, u8, 4> -> !po2.act<1x3x3, u8, 4> {
  ^bb0(%a: ui8, %b: ui8):
    %s = po2.sum %a, %b, %a : (ui8, ui8, ui8) -> ui9
    %r = po2.rescale %a, 0 clamp [0, 255] : ui8 -> ui8
    po2.yield %r : ui8
  }
  func.return
}
// CHECK: po2.sum: result type ui9 cannot hold the range [0, 765] of its operands (needs at least ui10): it could overflow

// -----

func.func @f(%x: !po2.act<2x3x3, u8, 4>) {
  %y = po2.unrolled_conv2d "u" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<2x3x3, u8, 4> -> !po2.act<1x3x3, u8, 4> {
  ^bb0(%a: ui8, %b: ui8):
    %s = "po2.sum"() : () -> ui9
    %r = po2.rescale %a, 0 clamp [0, 255] : ui8 -> ui8
    po2.yield %r : ui8
  }
  func.return
}
// CHECK: po2.sum needs at least one operand

// -----

func.func @f(%x: !po2.act<2x3x3, u8, 4>) {
  %y = po2.unrolled_conv2d "u" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<2x3x3, u8, 4> -> !po2.act<1x3x3, u8, 4> {
  ^bb0(%a: ui8, %b: ui8):
    %s = po2.rescale %a, 0 clamp [0, 300] : ui8 -> ui8
    %r = po2.rescale %a, 0 clamp [0, 255] : ui8 -> ui8
    po2.yield %r : ui8
  }
  func.return
}
// CHECK: po2.rescale: result type ui8 cannot hold the range [0, 300] of its operands (needs at least ui9): it could overflow

// -----

func.func @f(%x: !po2.act<2x3x3, u8, 4>) {
  %y = po2.unrolled_conv2d "u" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<2x3x3, u8, 4> -> !po2.act<1x3x3, u8, 4> {
  ^bb0(%a: ui8, %b: ui8):
    %s = po2.rescale %a, 0 clamp [5, 4] : ui8 -> ui8
    %r = po2.rescale %a, 0 clamp [0, 255] : ui8 -> ui8
    po2.yield %r : ui8
  }
  func.return
}
// CHECK: po2.rescale: clamp [5, 4] is empty

// -----

func.func @f(%a: ui8) {
  po2.yield %a : ui8
}
// CHECK: 'po2.yield' expects parent op 'po2.unrolled_conv2d'

// -----

func.func @f(%a: i8) {
  %s = po2.neg %a : i8 -> si9
  func.return
}
// CHECK: po2.neg: operand #0 must be a signed or unsigned integer (si/ui), got i8
