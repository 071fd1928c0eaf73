"""The mail core: an outbox written in the caller's transaction (outbox.py), and a sender that delivers it later,
outside any request (sender.py), through SMTP or, in development, into files (transport.py)."""
