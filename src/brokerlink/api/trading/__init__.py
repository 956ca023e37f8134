"""Trading routes: balances, positions, instruments, quotes, orders, fills."""
