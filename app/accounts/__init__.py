"""People who use Keyfob: the User model, password hashing and policy, login throttling, and the users CLI."""
