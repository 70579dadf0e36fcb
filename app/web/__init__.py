"""The HTTP answers: the catch-all that decides (catchall.py), the responder that answers (responder.py),
negotiation, rendering, texts and branding, and the admin app with its rate limits."""
