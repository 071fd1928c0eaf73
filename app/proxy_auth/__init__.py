"""Forward auth for reverse proxies: the rules file (rules.py, pure) and the endpoint they call (routes.py)."""
