"""trtbuild's built-in export recipes (installed as ``trtbuild.recipes``).

A project's own ``recipes/<name>.py`` beside its builds.yaml takes precedence over these; the interface
is described in ``trtbuild.export.registry`` and docs/recipes.md.
"""
