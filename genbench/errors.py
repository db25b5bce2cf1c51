"""Errors that reach the user.

A :class:`UserError` is bad input (unknown component, impossible shape, missing file, corrupt
checkpoint, missing weights offline). The CLI prints its message on one line and exits with
status 2, without a traceback; library callers can catch it like any exception.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable


class UserError(Exception):
    """Bad input; the message names the problem and the fix, on one line."""

    exit_code = 2


class UnknownComponentError(UserError, KeyError):
    """A registry lookup for a name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class MissingWeightsError(UserError, FileNotFoundError):
    """A weights file that is needed, absent, and cannot be downloaded."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def notice(message: str) -> None:
    """One line to stderr about something genbench did on its own (e.g. refit a corrupt cache
    file), prefixed like its errors."""
    print(f"genbench: {message}", file=sys.stderr, flush=True)


def short_reason(exc: BaseException) -> str:
    """An exception as a short clause for a one-line message: its first sentence of its first
    line, terminal colour codes removed (library messages, e.g. torch.load's, span paragraphs)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    line = text.splitlines()[0].strip() if text else ""
    sentence = line.split(". ")[0].rstrip(".")
    return sentence or type(exc).__name__


def unknown_key_error(full_key: str, key: str, known: Iterable[str]) -> UserError:
    """The error for a configuration key that nothing reads, naming the closest known keys
    (:func:`difflib.get_close_matches`): a misspelt key must not be ignored."""
    import difflib

    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    where = f"known keys here: {', '.join(known)}" if known else "nothing takes keys here"
    return UserError(f"unknown key {full_key!r}; {hint}{where}")
