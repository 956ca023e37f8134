"""Layer 2: the event bus: an in-process implementation and Redis Streams, one contract for both."""
