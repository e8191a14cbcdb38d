"""Core's built-in evaluators (registered through ``compat_register_evaluators``)."""
