"""deltahub HTTP service and command line."""
