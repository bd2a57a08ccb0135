"""Templates, static assets and translations of the captive portal (package data)."""
