"""Containment: signed webhook deliveries of response actions and a reference receiver that applies them."""
