"""The key lifecycle: format, storage, create/verify/rotate/revoke, usage and rate limits. No request objects here:
the dashboard, the JSON API, the admin pages and the CLI are thin faces over app.keys.service."""
