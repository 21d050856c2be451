// RUN: po2-opt %s -p po2-to-hw | filecheck %s

// A 3x3 conv with padding 1 on a 4x4 image, three nonzero weights and a bias: the layer
// becomes a streaming module (position counters, registered padding masks, a tap chain
// of (KH-1)*W + KW = 11 pixels, a pipelined adder tree, the requantisation), and the func
// becomes the top module that instantiates it.

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

// CHECK:       hw.module @conv1(in %[[CLK:[0-9a-z_]+]] clk: !seq.clock, in %[[RST:[0-9a-z_]+]] rst: i1, in %[[EN:[0-9a-z_]+]] en: i1, in %{{.*}} in_valid: i1, in %[[IN:[0-9a-z_]+]] in_data: i8, out out_valid: i1, out out_data: i8)
// CHECK-SAME:  attributes {hashiflex.report = {kind = "conv", layer = "conv1"
// CHECK-SAME:  nonzero_weights = 3 : i64
// CHECK-SAME:  line_buffer_bits = 88 : i64
// The raster position of the next pixel wraps at Q_end = V(3,3) = 20 to 20 + 1 - 16 = 5.
// CHECK:         %[[POS:[0-9a-z_]+]] = seq.compreg %{{.*}}, %[[CLK]] reset %[[RST]], %{{.*}} {sv.namehint = "conv1_pos"} : i5
// CHECK:         %[[NEXTV:[0-9a-z_]+]] = seq.compreg %{{.*}}, %[[CLK]] reset %[[RST]], %{{.*}} {sv.namehint = "conv1_next_v"} : i5
// CHECK:         %[[MATCH:[0-9a-z_]+]] = comb.icmp eq %[[POS]], %[[NEXTV]] : i5
// CHECK:         comb.and %{{.*}}, %[[MATCH]] {sv.namehint = "conv1_fire_now"} : i1
// Padding masks, registered with the pixel (kernel row 0 and 2, column 0 and 2).
// CHECK:         seq.compreg %{{.*}}, %[[CLK]] {sv.namehint = "conv1_row_ok0"} : i1
// CHECK:         seq.compreg %{{.*}}, %[[CLK]] {sv.namehint = "conv1_row_ok2"} : i1
// CHECK:         seq.compreg %{{.*}}, %[[CLK]] {sv.namehint = "conv1_col_ok0"} : i1
// CHECK:         seq.compreg %{{.*}}, %[[CLK]] {sv.namehint = "conv1_col_ok2"} : i1
// CHECK:         seq.compreg %{{.*}}, %[[CLK]] reset %[[RST]], %{{.*}} {sv.namehint = "conv1_fire"} : i1
// The tap chain: tap 0 is the newest pixel, tap 10 = (KH-1)*W + (KW-1) the window's (0, 0).
// CHECK:         %[[T0:.*]] = seq.compreg %{{.*}}, %[[CLK]] {sv.namehint = "conv1_line_buf_c0_t0"} : i8
// CHECK-NEXT:    comb.mux %{{.*}}, %[[IN]], %[[T0]] : i8
// CHECK:         seq.compreg %{{.*}}, %[[CLK]] {sv.namehint = "conv1_line_buf_c0_t10"} : i8
// Shift by one is wiring; the adder tree's adders are exactly as wide as their intervals.
// CHECK:         comb.concat %{{.*}}, %{{.*}} : i8, i1
// CHECK:         comb.add %{{.*}}, %{{.*}} {sv.namehint = "conv1_acc_0"} : i9
// CHECK:         comb.add %{{.*}}, %{{.*}} {sv.namehint = "conv1_acc_1"} : i10
// A pipeline register after two adder levels, enabled by en.
// CHECK:         %[[R:[0-9a-z_]+]] = seq.compreg %[[M:[0-9a-z_]+]], %[[CLK]] : i10
// CHECK-NEXT:    %[[M]] = comb.mux %[[EN]], %{{.*}}, %[[R]] : i10
// CHECK:         comb.sub %{{.*}}, %{{.*}} : i11
// ReLU clamp of the rescale (shift 0): comparators and muxes, then the output format.
// CHECK:         comb.icmp sgt %{{.*}}, %{{.*}} : i11
// CHECK:         comb.icmp slt %{{.*}}, %{{.*}} : i11
// CHECK:         comb.extract %{{.*}} from 0 :  (i11) -> i8
// CHECK:         seq.compreg %{{.*}}, %[[CLK]] reset %[[RST]], %{{.*}} {sv.namehint = "conv1_valid_d3"} : i1
// CHECK:         hw.output %{{.*}}, %{{.*}} : i1, i8

// CHECK:       hw.module @main_top(in %{{.*}} clk: !seq.clock, in %{{.*}} rst: i1, in %{{.*}} in_valid: i1, in %{{.*}} in_data: i8, out in_ready: i1, out out_valid: i1, out out_data: i8)
// CHECK:         hw.instance "conv1_inst" @conv1(clk: %{{.*}}: !seq.clock, rst: %{{.*}}: i1, en: %{{.*}}: i1, in_valid: %{{.*}}: i1, in_data: %{{.*}}: i8) -> (out_valid: i1, out_data: i8)
// CHECK-NOT:   func.func
