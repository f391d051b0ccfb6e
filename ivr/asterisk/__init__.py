"""Asterisk as the controller sees it: its configuration and its process."""
