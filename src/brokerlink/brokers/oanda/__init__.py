"""The OANDA v20 adapter (forex and CFDs) and its test venue (:mod:`brokerlink.brokers.oanda.venue`)."""
