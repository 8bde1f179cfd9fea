"""Errors of detection.

ConfigError (receiver.errors)
└── RulesError   a rules file that cannot be read or does not validate
"""

from receiver.errors import ConfigError


class RulesError(ConfigError):
    """A rules file is unreadable or invalid; the message names rule and field."""
