// The whole hardening pipeline from layer-level po2 IR to SystemVerilog in one po2-opt call.
// RUN: po2-opt %s -p po2-unroll,po2-canonicalize,po2-infer-widths,po2-to-hw -t sv | filecheck %s

builtin.module {
  func.func @net(%x: !po2.act<1x4x4, u8, 4>) -> !po2.act<2x4x4, u8, 4> {
    %y = po2.conv2d "conv.1" %x kernel [1, 1] stride [1, 1] padding [0, 0, 0, 0] groups 1 act "relu" exp_bits 3 exp_base [0, -1] shift [0, 1] bias [0, 3] weights dense<[[[[2]]], [[[-3]]]]> : tensor<2x1x1x1xi8> : !po2.act<1x4x4, u8, 4> -> !po2.act<2x4x4, u8, 4>
    func.return %y : !po2.act<2x4x4, u8, 4>
  }
}

// The layer keeps its (sanitised) name; registers are always_ff blocks on the clock.
// CHECK:       module conv_1 (
// CHECK-NEXT:    input  wire clk,
// CHECK:         output wire [15:0] out_data
// CHECK:         always_ff @(posedge clk)
// CHECK:       endmodule
// CHECK:       module net_top (
// CHECK:         conv_1 conv_1_inst (
// CHECK:       endmodule
