"""Users, tokens and permissions, compatible with MLflow's basic-auth app (docs/auth.md).

``runstream.auth.app.setup_auth`` turns it on for an app; ``rules`` is the permission table;
``admin`` is the ``runstream users`` command. Nothing is imported here, so the CLI stays fast.
"""
