// RUN: po2-opt %s | po2-opt | filecheck %s
// !po2.act<shape, format, frac>: CxHxW tensors and N vectors, signed and unsigned, any frac.

// CHECK: func.func @types(!po2.act<8x16x16, u8, 4>, !po2.act<3x1x1, s12, -2>, !po2.act<1280, s8, 0>, !po2.act<1x1x1, u1, 7>) -> !po2.act<10, s64, 9>
func.func @types(%a: !po2.act<8x16x16, u8, 4>, %b: !po2.act<3x1x1, s12, -2>, %c: !po2.act<1280, s8, 0>, %d: !po2.act<1x1x1, u1, 7>) -> !po2.act<10, s64, 9>
