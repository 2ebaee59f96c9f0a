"""A generic ASGI server on Tornado (the bridge, lifespan, server, test thread); nothing BitNet-specific."""
