// RUN: po2-opt %s | po2-opt | filecheck %s
// po2.concat and po2.select_channels (torch.cat, chunk/split pieces, channel shuffles).

// CHECK-LABEL: func.func @concat
// CHECK-NEXT:    %{{.*}} = po2.concat "cat" %{{.*}}, %{{.*}} : !po2.act<3x5x7, u8, 4>, !po2.act<2x5x7, s8, 6> -> !po2.act<5x5x7, s8, 4>
func.func @concat(%a: !po2.act<3x5x7, u8, 4>, %b: !po2.act<2x5x7, s8, 6>) -> !po2.act<5x5x7, s8, 4> {
  %y = po2.concat "cat" %a, %b : !po2.act<3x5x7, u8, 4>, !po2.act<2x5x7, s8, 6> -> !po2.act<5x5x7, s8, 4>
  func.return %y : !po2.act<5x5x7, s8, 4>
}

// CHECK-LABEL: func.func @select_channels
// CHECK-NEXT:    %{{.*}} = po2.select_channels "shuffle" %{{.*}} channels [0, 3, 1, 4, 2, 5] : !po2.act<6x5x7, u8, 4> -> !po2.act<6x5x7, u8, 4>
// CHECK-NEXT:    %{{.*}} = po2.select_channels "chunk.1" %{{.*}} channels [3, 4, 5] : !po2.act<6x5x7, u8, 4> -> !po2.act<3x5x7, u8, 4>
func.func @select_channels(%x: !po2.act<6x5x7, u8, 4>) -> !po2.act<3x5x7, u8, 4> {
  %s = po2.select_channels "shuffle" %x channels [0, 3, 1, 4, 2, 5] : !po2.act<6x5x7, u8, 4> -> !po2.act<6x5x7, u8, 4>
  %y = po2.select_channels "chunk.1" %s channels [3, 4, 5] : !po2.act<6x5x7, u8, 4> -> !po2.act<3x5x7, u8, 4>
  func.return %y : !po2.act<3x5x7, u8, 4>
}
