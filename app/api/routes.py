"""API routes."""

from flask import g, jsonify

from app.api import bp
from app.api.decorator import require_api_key
from app.database import utcnow


@bp.get("/whoami")
@require_api_key()
def whoami():
    """Who the presented key acts for: any valid key may ask."""
    key = g.api_key
    return jsonify(user_id=key.user_id, key_id=key.id, key=key.display_start, scopes=list(key.scopes),
                   timestamp=utcnow().isoformat())
