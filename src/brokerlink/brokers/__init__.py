"""Layer 3: broker adapters behind one protocol (the sim venue, Alpaca, OANDA, CCXT arrive in their issues)."""
