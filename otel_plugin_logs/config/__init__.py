"""Settings from the environment (OTEL_* conventions), shared by every side.

``errors`` (ConfigError), ``fields`` (declaring and resolving a setting), ``runner``
(RunnerConfig: all a plugin process imports), ``host`` (HostConfig), ``checks`` (values that
parse but cannot work), ``describe`` (what doctor and --help print), ``resource``
(OTEL_RESOURCE_ATTRIBUTES and other key=value lists), ``text`` (escaping plugin text).
"""
