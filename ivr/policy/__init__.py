"""Pure decisions: no I/O, no clocks, no Asterisk. Everything here is unit-testable."""
