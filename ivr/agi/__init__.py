"""FastAGI: Asterisk asks, the controller decides. One small handler per dialplan entry point."""
