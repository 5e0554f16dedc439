"""The error hierarchy: what the CLI boundary catches and turns into a message and an exit code.

"The user's input is wrong" (exit 2), "a model failed to build" (exit 1) and "trtbuild's own state is
unusable" are different exceptions, so callers can tell them apart.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable


class TrtbuildError(Exception):
    """Base of every error trtbuild reports without a traceback.

    Attributes:
        exit_code: the process exit code the CLI uses for this error.
    """

    exit_code = 1


class ManifestError(TrtbuildError):
    """The manifest (builds.yaml) or a file it names is invalid.

    ``messages`` holds one ``file:line: field.path: message`` line per problem, so all problems of a
    manifest are reported at once. Exit code 2.
    """

    exit_code = 2

    def __init__(self, messages: str | list[str]) -> None:
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        super().__init__("\n".join(self.messages))


class StateError(TrtbuildError):
    """trtbuild's own state (lock file, caches) is unreadable; the message says which file and what to do."""

    exit_code = 2


class WriteError(TrtbuildError):
    """trtbuild cannot write its own state (a read-only project, a full disk, a file-size limit).

    The message names the file and the errno (``os_error_line``). Exit code 1: nothing is wrong with the
    input; the machine refused the write.
    """

    exit_code = 1


class BusyError(TrtbuildError):
    """Another trtbuild run holds the project's run lock."""

    exit_code = 3


class BuildError(TrtbuildError):
    """One node of the graph (an engine build, an export) failed. Other models go on.

    Attributes:
        log_tail: the last lines of the builder's log, shown to the user.
    """

    def __init__(self, message: str, log_tail: str = "") -> None:
        self.log_tail = log_tail
        super().__init__(message)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices`` to a mistyped ``word`` (difflib's ratio
    >= 0.6), else an empty string."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def os_error_line(exc: OSError, path: object = None, doing: str = "") -> str:
    """One line for an ``OSError``: ``FILE: cannot save the stat cache: [Errno 28] ENOSPC: No space left on
    device``. ``path`` defaults to the error's own file name; ``doing`` (``cannot ...``) is optional."""
    where = path if path is not None else (exc.filename if exc.filename is not None else "<unknown file>")
    name = errno.errorcode.get(exc.errno or 0, "")
    code = f"[Errno {exc.errno}] {name}: " if exc.errno is not None else ""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{where}: {doing + ': ' if doing else ''}{code}{reason}"
