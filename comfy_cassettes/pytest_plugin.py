"""pytest plugin: fixtures and markers that run a comfy-cassettes replay server for a test suite."""
