"""Shared fixtures: real servers started as local processes on 127.0.0.1."""

from tests.servers.fixtures import *  # noqa: F403
