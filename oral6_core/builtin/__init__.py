"""The core's own plugin: registered through the same plugin manager as every other plugin."""
