// RUN: po2-run %s --stimulus %S/Inputs/counter.stim | filecheck %s
// RUN: po2-run %s --stimulus %S/Inputs/counter.stim --when wrapped --outputs count --hex | filecheck %s --check-prefix=WHEN

// A 2-bit counter with a clock enable (a mux feeding the register its own value) and a
// synchronous reset, instantiated by a top that flags the cycle it reads 3. The stimulus
// resets it, counts five enabled cycles, holds it for two, then counts on.

builtin.module {
  hw.module @counter(in %clk: !seq.clock, in %rst: i1, in %en: i1, out count: i2) {
    %zero = hw.constant 0 : i2
    %one = hw.constant 1 : i2
    %next = comb.add %count, %one : i2
    %d = comb.mux %en, %next, %count : i2
    %count = seq.compreg %d, %clk reset %rst, %zero : i2
    hw.output %count : i2
  }
  hw.module @top(in %clk: !seq.clock, in %rst: i1, in %en: i1, out count: i2, out wrapped: i1) {
    %count = hw.instance "c" @counter(clk: %clk: !seq.clock, rst: %rst: i1, en: %en: i1) -> (count: i2)
    %three = hw.constant -1 : i2
    %wrapped = comb.icmp eq %count, %three : i2
    hw.output %count, %wrapped : i2, i1
  }
}

// CHECK:      0 count=0 wrapped=0
// CHECK-NEXT: 1 count=0 wrapped=0
// CHECK-NEXT: 2 count=1 wrapped=0
// CHECK-NEXT: 3 count=2 wrapped=0
// CHECK-NEXT: 4 count=3 wrapped=1
// CHECK-NEXT: 5 count=0 wrapped=0
// CHECK-NEXT: 6 count=1 wrapped=0
// CHECK-NEXT: 7 count=1 wrapped=0
// CHECK-NEXT: 8 count=1 wrapped=0
// CHECK-NEXT: 9 count=2 wrapped=0
// CHECK-NEXT: 10 count=3 wrapped=1
// CHECK-NOT:  {{.}}

// WHEN:      4 count=0x3
// WHEN-NEXT: 10 count=0x3
// WHEN-NOT:  {{.}}
