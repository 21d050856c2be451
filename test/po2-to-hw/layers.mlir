// RUN: po2-opt %s -p po2-to-hw | filecheck %s

// Requantisation, a residual add and global average pooling, each a streaming module; the
// top wires the input stream to both operands of the add (the skip and the requant branch).

builtin.module {
  func.func @net(%x: !po2.act<2x3x3, u8, 4>) -> !po2.act<2x1x1, u8, 2> {
    %r = po2.requant "rq" %x act "relu6" : !po2.act<2x3x3, u8, 4> -> !po2.act<2x3x3, u8, 3>
    %s = po2.residual_add "add" %x, %r act "none" : !po2.act<2x3x3, u8, 4>, !po2.act<2x3x3, u8, 3> -> !po2.act<2x3x3, s8, 3>
    %p = po2.avgpool "pool" %s multiplier 116508 shift 20 : !po2.act<2x3x3, s8, 3> -> !po2.act<2x1x1, u8, 2>
    func.return %p : !po2.act<2x1x1, u8, 2>
  }
}

// CHECK:       hw.module @rq(in %{{.*}} clk: !seq.clock, in %{{.*}} rst: i1, in %[[EN:[0-9a-z_]+]] en: i1, in %[[V:[0-9a-z_]+]] in_valid: i1, in %[[IN:[0-9a-z_]+]] in_data: i16, out out_valid: i1, out out_data: i16)
// CHECK-SAME:  kind = "requant"
// Round half up (add 2^0), shift right by one as an extract, clamp to [0, 6 * 2^3 = 48].
// CHECK:         %[[X:[0-9a-z_]+]] = comb.extract %[[IN]] from 0 :  (i16) -> i8
// CHECK:         comb.add %{{.*}}, %{{.*}} : i9
// CHECK:         comb.extract %{{.*}} from 1 :  (i9) -> i8
// CHECK:         %[[C48:.*]] = hw.constant 48 : i8
// CHECK:         comb.icmp ugt %{{.*}}, %[[C48]] : i8
// CHECK:         hw.output

// CHECK:       hw.module @add(in %{{.*}} clk: !seq.clock, in %{{.*}} rst: i1, in %{{.*}} en: i1, in %{{.*}} a_valid: i1, in %{{.*}} a_data: i16, in %{{.*}} b_valid: i1, in %{{.*}} b_data: i16, out out_valid: i1, out out_data: i16)
// CHECK-SAME:  kind = "residual_add"
// CHECK-SAME:  fifo_depths = [
// Both operands are buffered; pop when both FIFOs hold an item.
// CHECK:         seq.compreg {{.*}} {sv.namehint = "add_fifo_a_count"}
// CHECK:         seq.compreg {{.*}} {sv.namehint = "add_fifo_b_count"}
// CHECK:         comb.and {{.*}} {sv.namehint = "add_pop"} : i1
// CHECK:         seq.compreg {{.*}} {sv.namehint = "add_fifo_a_mem0"} : i16
// Scales aligned to F = 4 by a left shift of b (wiring), then an exact add.
// CHECK:         comb.concat %{{.*}}, %{{.*}} : i8, i1
// CHECK:         comb.add %{{.*}}, %{{.*}} : i10
// CHECK:         hw.output

// CHECK:       hw.module @pool(
// CHECK-SAME:  kind = "avgpool"
// CHECK-SAME:  multiplier = 116508 : i64
// One accumulator per channel over the 9 pixels, exactly as wide as 9 * [-128, 127].
// CHECK:         seq.compreg {{.*}} {sv.namehint = "pool_count"} : i4
// CHECK:         seq.compreg {{.*}} {sv.namehint = "pool_sum0"} : i12
// CHECK:         seq.compreg {{.*}} {sv.namehint = "pool_sum1"} : i12
// The multiply by 116508 = 2^17 - 2^14 + 2^11 - 2^8 + 2^5 - 2^2 (CSD) is shifts and adds.
// CHECK-NOT:     comb.mul
// CHECK:         comb.sub
// CHECK:         hw.output

// CHECK:       hw.module @net_top(
// CHECK:         %[[RV:[0-9a-z_]+]], %[[RD:[0-9a-z_]+]] = hw.instance "rq_inst" @rq(clk: %{{.*}}: !seq.clock, rst: %{{.*}}: i1, en: %{{.*}}: i1, in_valid: %[[TV:[0-9a-z_]+]]: i1, in_data: %[[TD:[0-9a-z_]+]]: i16)
// CHECK:         %[[AV:[0-9a-z_]+]], %[[AD:[0-9a-z_]+]] = hw.instance "add_inst" @add({{.*}}a_valid: %[[TV]]: i1, a_data: %[[TD]]: i16, b_valid: %[[RV]]: i1, b_data: %[[RD]]: i16)
// CHECK:         hw.instance "pool_inst" @pool({{.*}}in_valid: %[[AV]]: i1, in_data: %[[AD]]: i16)
