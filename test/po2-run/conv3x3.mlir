// RUN: po2-opt %s -p po2-to-hw | po2-run --top main_top --stimulus %S/Inputs/conv3x3.stim --when out_valid --outputs out_data | filecheck %s

// Run the hardware of test/po2-to-hw/conv3x3.mlir (a 3x3 conv, padding 1, on 4x4 images)
// without Verilator: two images stream in back to back, one pixel a cycle, then zero
// pixels drain the pipeline. The 32 outputs are the po2 interpreter's
// (`run_po2(module, images)`, docs/semantics.md) for the same two images, raster order.

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


// Image 0.
// CHECK:      {{[0-9]+}} out_data=0
// CHECK-NEXT: {{[0-9]+}} out_data=0
// CHECK-NEXT: {{[0-9]+}} out_data=159
// CHECK-NEXT: {{[0-9]+}} out_data=247
// CHECK-NEXT: {{[0-9]+}} out_data=233
// CHECK-NEXT: {{[0-9]+}} out_data=255
// CHECK-NEXT: {{[0-9]+}} out_data=255
// CHECK-NEXT: {{[0-9]+}} out_data=116
// CHECK-NEXT: {{[0-9]+}} out_data=0
// CHECK-NEXT: {{[0-9]+}} out_data=255
// CHECK-NEXT: {{[0-9]+}} out_data=255
// CHECK-NEXT: {{[0-9]+}} out_data=255
// CHECK-NEXT: {{[0-9]+}} out_data=255
// CHECK-NEXT: {{[0-9]+}} out_data=255
// CHECK-NEXT: {{[0-9]+}} out_data=125
// CHECK-NEXT: {{[0-9]+}} out_data=236
// Image 1.
// CHECK-NEXT: {{[0-9]+}} out_data=255
// CHECK-NEXT: {{[0-9]+}} out_data=214
// CHECK-NEXT: {{[0-9]+}} out_data=161
// CHECK-NEXT: {{[0-9]+}} out_data=195
// CHECK-NEXT: {{[0-9]+}} out_data=55
// CHECK-NEXT: {{[0-9]+}} out_data=255
// CHECK-NEXT: {{[0-9]+}} out_data=255
// CHECK-NEXT: {{[0-9]+}} out_data=255
// CHECK-NEXT: {{[0-9]+}} out_data=99
// CHECK-NEXT: {{[0-9]+}} out_data=89
// CHECK-NEXT: {{[0-9]+}} out_data=255
// CHECK-NEXT: {{[0-9]+}} out_data=255
// CHECK-NEXT: {{[0-9]+}} out_data=255
// CHECK-NEXT: {{[0-9]+}} out_data=246
// CHECK-NEXT: {{[0-9]+}} out_data=87
// CHECK-NEXT: {{[0-9]+}} out_data=255
