"""Versioned key-value store with watch; the API server is its only user."""
