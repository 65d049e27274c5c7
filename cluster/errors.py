"""Errors a user can hit: each message names the file/resource and the fix."""


class MeshstepError(Exception):
    """A user-facing error; the CLI prints it without a traceback and exits 2."""

    exit_code = 2


class SourceError(MeshstepError):
    """The source (snapshot file, cluster, demo) could not be read."""


class ConflictError(MeshstepError):
    """Someone else changed the same record first."""

    exit_code = 3
