// RUN: po2-opt %s -p 'po2-to-hw{pixels_per_cycle=2}' | filecheck %s

// A 3x3 stride-1 max pooling (padding 1) on a signed 4x5 image at two pixels per cycle, on
// the conv's window (pool2d.py): two comparator trees read one tap chain that shifts two
// pixels per accepted beat, the position counters count beats in the padded raster of
// width 6 (3 beats a row, the last one half empty: 12 per image), padded taps and the
// don't-care lane past a row's end read the format's minimum code (torch's -inf).

builtin.module {
  func.func @main(%0: !po2.act<1x4x5, s8, 4>) -> !po2.act<1x4x5, s8, 4> {
    %1 = po2.maxpool2d "mp" %0 kernel [3, 3] stride [1, 1] padding [1, 1, 1, 1] : !po2.act<1x4x5, s8, 4> -> !po2.act<1x4x5, s8, 4>
    func.return %1 : !po2.act<1x4x5, s8, 4>
  }
}

// CHECK:       hw.module @mp(in %{{.*}} clk: !seq.clock, in %{{.*}} rst: i1, in %{{.*}} en: i1, in %{{.*}} in_valid: i1, in %{{.*}} in_data: i16, out out_valid: i1, out out_data: i16)
// CHECK-SAME:  attributes {hashiflex.report = {kind = "maxpool2d", layer = "mp"
// The chain holds 1 + 1 + 2*6 + 2 + 1 = 17 pixels of 8 bits.
// CHECK-SAME:  line_buffer_bits = 136 : i64
// CHECK-SAME:  lanes = 2 : i64, input_lanes = 2 : i64
// CHECK:         %{{.*}} = seq.compreg %{{.*}} {sv.namehint = "mp_pos"} : i4
// CHECK:         %{{.*}} = seq.compreg %{{.*}} {sv.namehint = "mp_next_v"} : i4
// Lane 0's window can hang over the left edge, lane 1's over the right (or the empty lane).
// CHECK:         {sv.namehint = "mp_col_ok0_lane0"}
// CHECK:         {sv.namehint = "mp_col_ok2_lane1"}
// CHECK:         %[[FILL:.*]] = hw.constant -128 : i8
// CHECK:         comb.mux %{{.*}}, %{{.*}}, %[[FILL]] : i8
// CHECK:         comb.icmp sgt
// CHECK:         hw.module @main_top(in %{{.*}} clk: !seq.clock, in %{{.*}} rst: i1, in %{{.*}} in_valid: i1, in %{{.*}} in_data: i16, out in_ready: i1, out out_valid: i1, out out_data: i16)
// CHECK-SAME:    cycles_per_image = 12 : i64
// CHECK-SAME:    pixels_per_cycle = 2 : i64
