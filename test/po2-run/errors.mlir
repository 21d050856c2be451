// Bad stimulus or options: one line naming the port, the line or the module, exit 1,
// and nothing simulated (the whole stimulus is checked before the first cycle).
// RUN: echo "x=3" > %t.stim && echo "y=1" >> %t.stim
// RUN: not po2-run %s --stimulus %t.stim 2>&1 | filecheck %s --check-prefix=PORT
// RUN: echo "x=16" | not po2-run %s --stimulus - 2>&1 | filecheck %s --check-prefix=WIDTH
// RUN: echo "x=1" | not po2-run %s --stimulus - --top nope 2>&1 | filecheck %s --check-prefix=TOP

hw.module @inc(in %x: i4, out y: i4) {
  %one = hw.constant 1 : i4
  %y = comb.add %x, %one : i4
  hw.output %y : i4
}

// PORT:       po2-run: stimulus line 2: no input port 'y' on 'inc' (inputs: x)
// PORT-NOT:   {{.}}
// WIDTH:      po2-run: stimulus line 1: x=16 does not fit the port's 4 bits
// TOP:        po2-run: no hw.module named 'nope': the design has inc
