"""The web server: health and metrics now; the API and console build on this app factory."""
