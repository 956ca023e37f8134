"""The CCXT adapter: one :class:`~brokerlink.brokers.base.BrokerAdapter` over any exchange ccxt supports."""
