"""instruments layer."""
