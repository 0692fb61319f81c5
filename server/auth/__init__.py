"""What signs and what limits: bearer tokens, pay codes, the event screen's passes, SMS codes,
rate limits, security headers and the console's accounts."""
