"""Layer 0: Decimal money and quantity helpers, clocks, ids and the error base. No I/O."""
