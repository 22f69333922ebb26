"""A Piston v2-compatible API (``/piston/api/v2``) over Warden's jobs."""
