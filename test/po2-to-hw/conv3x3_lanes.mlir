// RUN: po2-opt %s -p 'po2-to-hw{pixels_per_cycle=2}' | filecheck %s

// The 3x3 conv of conv3x3.mlir (padding 1, 4x4 image) at two pixels per cycle: the ports
// carry two pixels per beat, two copies of the datapath read one tap chain that shifts
// two pixels per accepted beat, the position counters count beats (8 per image), and the
// top's cycles per image are 4 rows x 2 beats.

builtin.module {
  func.func @main(%0: !po2.act<1x4x4, u8, 4>) -> !po2.act<1x4x4, u8, 4> {
    %1 = po2.unrolled_conv2d "conv1" %0 kernel [3, 3] stride [1, 1] padding [1, 1, 1, 1] groups 1 act "relu" : !po2.act<1x4x4, u8, 4> -> !po2.act<1x4x4, u8, 4> {
    ^bb0(%2: ui8, %3: ui8, %4: ui8, %5: ui8, %6: ui8, %7: ui8, %8: ui8, %9: ui8, %10: ui8):
      %11 = po2.shl %6, 1 : ui8 -> ui9
      %12 = po2.const 3 : ui2
      %13 = po2.sum %2, %11, %12 : (ui8, ui9, ui2) -> ui10
      %14 = po2.sub %13, %10 : (ui10, ui8) -> si11
      %15 = po2.rescale %14, 0 clamp [0, 255] : si11 -> ui8
      po2.yield %15 : ui8
    }
    func.return %1 : !po2.act<1x4x4, u8, 4>
  }
}

// CHECK:       hw.module @conv1(in %{{.*}} clk: !seq.clock, in %{{.*}} rst: i1, in %{{.*}} en: i1, in %{{.*}} in_valid: i1, in %{{.*}} in_data: i16, out out_valid: i1, out out_data: i16)
// CHECK-SAME:  attributes {hashiflex.report = {kind = "conv", layer = "conv1"
// CHECK-SAME:  line_buffer_bits = 104 : i64
// CHECK-SAME:  lanes = 2 : i64, input_lanes = 2 : i64
// Positions in beats (8 per image); the chain holds 2*4 + 2 + 3 = 13 pixels.
// CHECK:         %{{.*}} = seq.compreg %{{.*}} {sv.namehint = "conv1_pos"} : i4
// CHECK:         %{{.*}} = seq.compreg %{{.*}} {sv.namehint = "conv1_next_v"} : i4
// Lane 0's window can hang over the left edge, lane 1's (corner column bx + 1) over the right.
// CHECK:         {sv.namehint = "conv1_col_ok0_lane0"}
// CHECK:         {sv.namehint = "conv1_col_ok2_lane1"}
// CHECK:         hw.module @main_top(in %{{.*}} clk: !seq.clock, in %{{.*}} rst: i1, in %{{.*}} in_valid: i1, in %{{.*}} in_data: i16, out in_ready: i1, out out_valid: i1, out out_data: i16)
// CHECK-SAME:    cycles_per_image = 8 : i64
// CHECK-SAME:    pixels_per_cycle = 2 : i64
