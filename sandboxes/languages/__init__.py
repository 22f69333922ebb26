"""Source languages: the registry, the jailed toolchains and the source runner."""
