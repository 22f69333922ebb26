"""Judge0 CE 1.13.1-compatible API under ``/judge0``: a thin adapter over Warden's own."""
