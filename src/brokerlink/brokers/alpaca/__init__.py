"""Alpaca (US stocks and crypto): the adapter over Trading API v2 and a test venue speaking its wire format."""
