"""Scenes and task registries: built-in tasks (`builtin`), LIBERO suites (`libero`)."""
