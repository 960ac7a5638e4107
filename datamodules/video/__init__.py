"""video data family."""
