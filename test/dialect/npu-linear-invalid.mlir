// RUN: po2-opt %s --split-input-file --verify-diagnostics | filecheck %s
// One case per verifier rule of po2.npu_linear, the programmable classifier.

func.func @f(%x: !po2.act<4x1x1, u7, 1>) {
  %y = po2.npu_linear "fc" %x slot "classifier" weight_bits 8 weight_frac 6 bias_bits 24 bias [1, 2] weights dense<1> : tensor<2x4xi32> : !po2.act<4x1x1, u7, 1> -> !po2.act<2, s25, 7>
  func.return
}
// CHECK: po2.npu_linear 'fc': input must be a vector (flatten first), got [4, 1, 1]

// -----

func.func @f(%x: !po2.act<4, u7, 1>) {
  %y = po2.npu_linear "fc" %x slot "classifier" weight_bits 8 weight_frac 6 bias_bits 24 bias [1, 2] weights dense<1> : tensor<2x5xi32> : !po2.act<4, u7, 1> -> !po2.act<2, s25, 7>
  func.return
}
// CHECK: po2.npu_linear 'fc': weights [2, 5] must be [outputs 2, inputs 4]

// -----

func.func @f(%x: !po2.act<4, u7, 1>) {
  %y = po2.npu_linear "fc" %x slot "classifier" weight_bits 40 weight_frac 6 bias_bits 24 bias [1, 2] weights dense<1> : tensor<2x4xi32> : !po2.act<4, u7, 1> -> !po2.act<2, s25, 7>
  func.return
}
// CHECK: po2.npu_linear 'fc': weight_bits 40 / bias_bits 24 out of range

// -----

func.func @f(%x: !po2.act<4, u7, 1>) {
  %y = po2.npu_linear "fc" %x slot "classifier" weight_bits 8 weight_frac 6 bias_bits 24 bias [1, 2] weights dense<128> : tensor<2x4xi32> : !po2.act<4, u7, 1> -> !po2.act<2, s25, 7>
  func.return
}
// CHECK: po2.npu_linear 'fc': a weight lies outside the NPU's 8-bit range [-128, 127]

// -----

func.func @f(%x: !po2.act<4, u7, 1>) {
  %y = po2.npu_linear "fc" %x slot "classifier" weight_bits 8 weight_frac 6 bias_bits 24 bias [1] weights dense<1> : tensor<2x4xi32> : !po2.act<4, u7, 1> -> !po2.act<2, s25, 7>
  func.return
}
// CHECK: po2.npu_linear 'fc': bias needs 2 values in the 24-bit range [-8388608, 8388607]

// -----

func.func @f(%x: !po2.act<4, u7, 1>) {
  %y = po2.npu_linear "fc" %x slot "classifier" weight_bits 8 weight_frac 6 bias_bits 24 bias [1, 8388608] weights dense<1> : tensor<2x4xi32> : !po2.act<4, u7, 1> -> !po2.act<2, s25, 7>
  func.return
}
// CHECK: po2.npu_linear 'fc': bias needs 2 values in the 24-bit range [-8388608, 8388607]

// -----

func.func @f(%x: !po2.act<4, u7, 1>) {
  %y = po2.npu_linear "fc" %x slot "classifier" weight_bits 8 weight_frac 6 bias_bits 24 bias [1, 2] weights dense<1> : tensor<2x4xi32> : !po2.act<4, u7, 1> -> !po2.act<2, s16, 7>
  func.return
}
// CHECK: po2.npu_linear 'fc': logits must be signed with at least 25 bits and frac 7, got !po2.act<2, s16, 7>

// -----

func.func @f(%x: !po2.act<4, u7, 1>) {
  %y = po2.npu_linear "fc" %x slot "classifier" weight_bits 8 weight_frac 6 bias_bits 24 bias [1, 2] weights dense<1> : tensor<2x4xi32> : !po2.act<4, u7, 1> -> !po2.act<2, s25, 8>
  func.return
}
// CHECK: po2.npu_linear 'fc': logits must be signed with at least 25 bits and frac 7, got !po2.act<2, s25, 8>
