"""Callbacks: a submission's result delivered to a URL its tenant named, safely (no
request to an address the configuration does not allow: see ``targets``)."""
