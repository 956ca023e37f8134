"""Layer 5: the ``brokerlink`` command."""
