"""A template oral6 plugin."""
