"""Tenants, API keys and quotas: who may run what, and how much.

``quotas`` and ``keys`` are pure (models and key material); ``registry`` keeps tenants and
keys in Redis. Nothing here knows HTTP: the API turns these answers into responses.
"""
