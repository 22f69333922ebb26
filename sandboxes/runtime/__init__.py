"""Running a module: the Sandbox, its engines, stop control, outcomes and wasmtime glue."""
