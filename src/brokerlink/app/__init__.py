"""Layer 6: ``create_app()``: wiring, lifespan, middleware."""
