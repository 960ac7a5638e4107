"""forgery data family."""
