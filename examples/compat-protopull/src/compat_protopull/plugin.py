"""Step 1: the plugin module. compat imports it at start-up for every command, so it imports no torch:
the config and the method are named as "module:attribute" strings and loaded on first use."""

from compat_core.hookspecs import hookimpl


@hookimpl
def compat_register_methods(register):
    register("protopull", config="compat_protopull.config:ProtoPullConfig",
             factory="compat_protopull.method:ProtoPull",
             summary="Example: CE + weight x (1 - cos(new embedding, old prototype of its class)).")
