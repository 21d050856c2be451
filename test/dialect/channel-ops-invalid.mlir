// RUN: po2-opt %s --split-input-file --verify-diagnostics | filecheck %s
// One case per verifier rule of po2.concat and po2.select_channels.

func.func @f(%a: !po2.act<3x5x7, u8, 4>, %b: !po2.act<2x5x6, u8, 4>) {
  %y = po2.concat "cat" %a, %b : !po2.act<3x5x7, u8, 4>, !po2.act<2x5x6, u8, 4> -> !po2.act<5x5x7, u8, 4>
  func.return
}
// CHECK: po2.concat 'cat': concatenating [3, 5, 7] and [2, 5, 6] along channels cannot give [5, 5, 7]

// -----

func.func @f(%a: !po2.act<3x5x7, u8, 4>, %b: !po2.act<2x5x7, u8, 4>) {
  %y = po2.concat "cat" %a, %b : !po2.act<3x5x7, u8, 4>, !po2.act<2x5x7, u8, 4> -> !po2.act<6x5x7, u8, 4>
  func.return
}
// CHECK: po2.concat 'cat': concatenating [3, 5, 7] and [2, 5, 7] along channels cannot give [6, 5, 7]

// -----

func.func @f(%x: !po2.act<6x5x7, u8, 4>) {
  %y = po2.select_channels "split" %x channels [4, 5, 6] : !po2.act<6x5x7, u8, 4> -> !po2.act<3x5x7, u8, 4>
  func.return
}
// CHECK: po2.select_channels 'split': channel 6 out of range for an input of 6 channels

// -----

func.func @f(%x: !po2.act<6x5x7, u8, 4>) {
  %y = po2.select_channels "split" %x channels [] : !po2.act<6x5x7, u8, 4> -> !po2.act<1x5x7, u8, 4>
  func.return
}
// CHECK: po2.select_channels 'split': selects a non-empty channel list of a CxHxW tensor, got [] of [6, 5, 7]

// -----

func.func @f(%x: !po2.act<6x5x7, u8, 4>) {
  %y = po2.select_channels "split" %x channels [0, 1] : !po2.act<6x5x7, u8, 4> -> !po2.act<2x5x7, u8, 3>
  func.return
}
// CHECK: po2.select_channels 'split': selecting 2 channels of !po2.act<6x5x7, u8, 4> must give 2x5x7 in the same format, got !po2.act<2x5x7, u8, 3>
