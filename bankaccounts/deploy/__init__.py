"""Ways of running the system besides the library's own runners (Ray actors)."""
