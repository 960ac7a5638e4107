"""anomaly data family."""
