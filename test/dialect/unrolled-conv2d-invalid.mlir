// RUN: po2-opt %s --split-input-file --verify-diagnostics | filecheck %s
// One case per verifier rule of po2.unrolled_conv2d: its window arguments, its yield and
// the range of every output channel.
// (The rule that the datapath ends with po2.yield is enforced first by xDSL's generic
// single-block terminator check, whose message is the one seen here.)

func.func @f(%x: !po2.act<2x3x3, u8, 4>) {
  %y = po2.unrolled_conv2d "u" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 2 act "none" : !po2.act<2x3x3, u8, 4> -> !po2.act<1x3x3, u8, 4> {
  ^bb0(%a: ui8, %b: ui8):
    %r = po2.rescale %a, 0 clamp [0, 255] : ui8 -> ui8
    po2.yield %r : ui8
  }
  func.return
}
// CHECK: po2.unrolled_conv2d 'u': groups=2 must divide input channels 2 and output channels 1

// -----

func.func @f(%x: !po2.act<2x3x3, u8, 4>) {
  %y = po2.unrolled_conv2d "u" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<2x3x3, u8, 4> -> !po2.act<1x3x3, u8, 4> {
  ^bb0(%a: ui8):
    %r = po2.rescale %a, 0 clamp [0, 255] : ui8 -> ui8
    po2.yield %r : ui8
  }
  func.return
}
// CHECK: po2.unrolled_conv2d 'u': the datapath takes 1 window values, expected 2 (channels 2 x kernel 1x1)

// -----

func.func @f(%x: !po2.act<2x3x3, u8, 4>) {
  %y = po2.unrolled_conv2d "u" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<2x3x3, u8, 4> -> !po2.act<1x3x3, u8, 4> {
  ^bb0(%a: ui8, %b: si8):
    %r = po2.rescale %a, 0 clamp [0, 255] : ui8 -> ui8
    po2.yield %r : ui8
  }
  func.return
}
// CHECK: po2.unrolled_conv2d 'u': window value of type si8 does not match the input format ui8

// -----

func.func @f(%x: !po2.act<2x3x3, u8, 4>) {
  %y = po2.unrolled_conv2d "u" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<2x3x3, u8, 4> -> !po2.act<1x3x3, u8, 4> {
  ^bb0(%a: ui8, %b: ui8):
    %r = po2.rescale %a, 0 clamp [0, 255] : ui8 -> ui8
  }
  func.return
}
// CHECK: Operation po2.rescale terminates block in single-block region but is not a terminator

// -----

func.func @f(%x: !po2.act<2x3x3, u8, 4>) {
  %y = po2.unrolled_conv2d "u" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<2x3x3, u8, 4> -> !po2.act<1x3x3, u8, 4> {
  ^bb0(%a: ui8, %b: ui8):
    %r = po2.rescale %a, 0 clamp [0, 255] : ui8 -> ui8
    po2.yield %r, %r : ui8, ui8
  }
  func.return
}
// CHECK: po2.unrolled_conv2d 'u': the datapath yields 2 values, expected one per output channel (1)

// -----

func.func @f(%x: !po2.act<2x3x3, u8, 4>) {
  %y = po2.unrolled_conv2d "u" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<2x3x3, u8, 4> -> !po2.act<1x3x3, u8, 4> {
  ^bb0(%a: ui8, %b: ui8):
    %s = po2.shl %a, 1 : ui8 -> ui9
    po2.yield %s : ui9
  }
  func.return
}
// CHECK: po2.unrolled_conv2d 'u': output channel 0 has range [0, 511], outside the result format u8 frac 4 (ui8)

// -----

func.func @f(%x: !po2.act<2x3x3, u8, 4>) {
  %y = po2.unrolled_conv2d "u" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "none" : !po2.act<2x3x3, u8, 4> -> !po2.act<1x3x3, u8, 4> {
  ^bb0(%a: ui8, %b: ui8):
    %r = po2.rescale %a, 0 clamp [-1, 255] : ui8 -> si9
    po2.yield %r : si9
  }
  func.return
}
// CHECK: po2.unrolled_conv2d 'u': output channel 0 has range [-1, 255], outside the result format u8 frac 4 (ui8)
