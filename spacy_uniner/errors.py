"""The package's one error type for a user's mistake: a value, file, folder, config or model that
cannot be used as given. Its message names what and where, and the command line prints it as one
line; any other error keeps its traceback, since it is the package's to fix."""


class UserError(ValueError):
    """A mistake in what the user gave. A ValueError, so that code catching those (spaCy's config
    checks, pydantic's validators, callers of the package's functions) goes on catching it."""
