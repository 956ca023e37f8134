"""Layer 4: the double-entry ledger (built in the ledger issue)."""
