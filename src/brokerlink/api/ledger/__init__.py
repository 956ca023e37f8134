"""The ledger API: balances, postings, fees, statistics and statements."""
