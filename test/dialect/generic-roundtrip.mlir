// The generic form of every po2 op that verifies in this folder (MLIR's `"po2.op"(...)
// <{properties}>` syntax, xdsl-opt's --print-op-generic) parses back to the same custom form:
// the custom printers and parsers and the generic ones agree on every property.
//
// RUN: po2-opt %S/act-type.mlir > %t.act.custom.mlir
// RUN: po2-opt %S/act-type.mlir --print-op-generic > %t.act.generic.mlir
// RUN: po2-opt %t.act.generic.mlir | diff %t.act.custom.mlir -
//
// RUN: po2-opt %S/conv2d.mlir > %t.conv.custom.mlir
// RUN: po2-opt %S/conv2d.mlir --print-op-generic > %t.conv.generic.mlir
// RUN: po2-opt %t.conv.generic.mlir | diff %t.conv.custom.mlir -
//
// RUN: po2-opt %S/layer-ops.mlir > %t.layer.custom.mlir
// RUN: po2-opt %S/layer-ops.mlir --print-op-generic > %t.layer.generic.mlir
// RUN: po2-opt %t.layer.generic.mlir | diff %t.layer.custom.mlir -
//
// RUN: po2-opt %S/unrolled-ops.mlir > %t.unrolled.custom.mlir
// RUN: po2-opt %S/unrolled-ops.mlir --print-op-generic > %t.unrolled.generic.mlir
// RUN: po2-opt %t.unrolled.generic.mlir | diff %t.unrolled.custom.mlir -
//
// The generic text really is generic, with every op and its typed properties in it:
// RUN: cat %t.act.generic.mlir %t.conv.generic.mlir %t.layer.generic.mlir %t.unrolled.generic.mlir | filecheck %s

// CHECK-DAG: "po2.conv2d"(%{{.*}}) <{layer = "{{.*}}", kernel = array<i64: 3, 3>, stride = array<i64: {{.*}}>, padding = array<i64: {{.*}}>, groups = {{[0-9]+}} : i64, act = "{{.*}}", exp_bits = 3 : i64, exp_base = array<i64: {{.*}}>, shift = array<i64: {{.*}}>, bias = array<i64: {{.*}}>, weights = dense<{{.*}}> : tensor<{{.*}}xi8>}>
// CHECK-DAG: "po2.residual_add"(%{{.*}}, %{{.*}}) <{layer = "{{.*}}", act = "{{.*}}"}>
// CHECK-DAG: "po2.requant"(%{{.*}}) <{layer = "{{.*}}", act = "{{.*}}"}>
// CHECK-DAG: "po2.avgpool"(%{{.*}}) <{layer = "{{.*}}", multiplier = {{[0-9]+}} : i64, shift = {{[0-9]+}} : i64}>
// CHECK-DAG: "po2.flatten"(%{{.*}}) <{layer = "{{.*}}"}>
// CHECK-DAG: "po2.npu_linear"(%{{.*}}) <{layer = "{{.*}}", slot = "classifier", weight_bits = 8 : i64, weight_frac = 6 : i64, bias_bits = 24 : i64, bias = array<i64: {{.*}}>, weights = dense<{{.*}}> : tensor<2x4xi32>}>
// CHECK-DAG: "po2.unrolled_conv2d"(%{{.*}}) <{layer = "{{.*}}", kernel = array<i64: {{.*}}>, stride = array<i64: {{.*}}>, padding = array<i64: {{.*}}>, groups = {{[0-9]+}} : i64, act = "{{.*}}"}>
// CHECK-DAG: "po2.const"() <{value = {{-?[0-9]+}} : i64}>
// CHECK-DAG: "po2.shl"(%{{.*}}) <{amount = {{[0-9]+}} : i64}>
// CHECK-DAG: "po2.add"(%{{.*}}, %{{.*}})
// CHECK-DAG: "po2.sub"(%{{.*}}, %{{.*}})
// CHECK-DAG: "po2.neg"(%{{.*}})
// CHECK-DAG: "po2.sum"(%{{.*}})
// CHECK-DAG: "po2.rescale"(%{{.*}}) <{shift = {{[0-9]+}} : i64, lo = {{-?[0-9]+}} : i64, hi = {{[0-9]+}} : i64}>
// CHECK-DAG: "po2.yield"(%{{.*}})
//
// RUN: po2-opt %S/pool-act-ops.mlir > %t.poolact.custom.mlir
// RUN: po2-opt %S/pool-act-ops.mlir --print-op-generic > %t.poolact.generic.mlir
// RUN: po2-opt %t.poolact.generic.mlir | diff %t.poolact.custom.mlir -
