// RUN: po2-opt %s -p 'po2-to-hw{pixels_per_cycle=8}' | filecheck %s

// The 3x3 conv of conv3x3_lanes.mlir (padding 1, 4x4 image) at 8 pixels per cycle: each beat
// carries 2 whole rows (P = 2*W), so 8 copies of the datapath compute the 2 output rows of a
// beat. The window of an output beat's second row reaches the next beat's first row, so
// output beat j fires with input beat j+1 (the last one with the next image's first beat,
// its rows masked like the bottom padding): the counters count 2 beats per image, the row
// masks are per lane row (row 0 can hang over the top, row 1 over the bottom), the columns
// are static (no column masks), and the top's cycles per image are 4 rows / 2.
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

// CHECK:       hw.module @conv1(in %{{.*}} clk: !seq.clock, in %{{.*}} rst: i1, in %{{.*}} en: i1, in %{{.*}} in_valid: i1, in %{{.*}} in_data: i64, out out_valid: i1, out out_data: i64)
// CHECK-SAME:  attributes {hashiflex.report = {kind = "conv", layer = "conv1"
// CHECK-SAME:  lanes = 8 : i64, input_lanes = 8 : i64, input_rows = 2 : i64, output_rows = 2 : i64
// CHECK:         %{{.*}} = seq.compreg %{{.*}} {sv.namehint = "conv1_pos"} : i2
// CHECK:         %{{.*}} = seq.compreg %{{.*}} {sv.namehint = "conv1_next_v"} : i2
// CHECK-NOT:     col_ok
// CHECK:         {sv.namehint = "conv1_row_ok0_row0"}
// CHECK:         {sv.namehint = "conv1_row_ok2_row1"}
// CHECK-NOT:     col_ok
// CHECK:         hw.module @main_top(in %{{.*}} clk: !seq.clock, in %{{.*}} rst: i1, in %{{.*}} in_valid: i1, in %{{.*}} in_data: i64, out in_ready: i1, out out_valid: i1, out out_data: i64)
// CHECK-SAME:    cycles_per_image = 2 : i64
// CHECK-SAME:    pixels_per_cycle = 8 : i64
