"""Layer 1: pure, immutable models and events (DESIGN.md's normalized model). No I/O."""
