"""Warden's judge: problems, verdicts, checkers and grading, as a pure library.

It knows the sandbox's schema (what a run did) and nothing of Redis, HTTP or tenants: the
workers run what it describes and the service stores and serves it.
"""
