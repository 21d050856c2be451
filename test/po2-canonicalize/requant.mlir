// RUN: po2-opt %s -p po2-canonicalize | filecheck %s
// A requant to the same type whose clamp covers the whole format is the identity.

// CHECK-LABEL: func.func @noop
// CHECK-NEXT:    func.return %{{.*}} : !po2.act<4x2x2, s8, 3>
func.func @noop(%x: !po2.act<4x2x2, s8, 3>) -> !po2.act<4x2x2, s8, 3> {
  %y = po2.requant "q" %x act "none" : !po2.act<4x2x2, s8, 3> -> !po2.act<4x2x2, s8, 3>
  func.return %y : !po2.act<4x2x2, s8, 3>
}

// relu on an unsigned format never bites either.
// CHECK-LABEL: func.func @relu_unsigned
// CHECK-NEXT:    func.return
func.func @relu_unsigned(%x: !po2.act<4x2x2, u8, 3>) -> !po2.act<4x2x2, u8, 3> {
  %y = po2.requant "q" %x act "relu" : !po2.act<4x2x2, u8, 3> -> !po2.act<4x2x2, u8, 3>
  func.return %y : !po2.act<4x2x2, u8, 3>
}

// Kept: a relu on a signed format, a relu6 below the format's max (48 < 255), a real
// shift (frac 3 -> 2) and a real saturation (s8 -> s6).
// CHECK-LABEL: func.func @kept
// CHECK-COUNT-4: po2.requant
func.func @kept(%x: !po2.act<4x2x2, s8, 3>, %u: !po2.act<4x2x2, u8, 3>) -> !po2.act<4x2x2, s8, 3> {
  %a = po2.requant "q1" %x act "relu" : !po2.act<4x2x2, s8, 3> -> !po2.act<4x2x2, s8, 3>
  %b = po2.requant "q2" %u act "relu6" : !po2.act<4x2x2, u8, 3> -> !po2.act<4x2x2, u8, 3>
  %c = po2.requant "q3" %x act "none" : !po2.act<4x2x2, s8, 3> -> !po2.act<4x2x2, s8, 2>
  %d = po2.requant "q4" %x act "none" : !po2.act<4x2x2, s8, 3> -> !po2.act<4x2x2, s6, 3>
  func.return %a : !po2.act<4x2x2, s8, 3>
}
