"""The built-in sim broker: a real venue on loopback (matching engine, market data, wire protocol, adapter)."""
