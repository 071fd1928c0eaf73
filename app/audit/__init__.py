"""The audit log and admin alerts: who did what to which key, from where, and when. Never a secret."""
